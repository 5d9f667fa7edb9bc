"""Server-side workflows of a job, one module each (FedAvg, FedAvgM, FedOpt, SCAFFOLD, cyclic,
swarm, cross-site evaluation, statistics, data check, private set intersection, split learning, FedBuff,
Flower apps, federated inference; more to come).

`WORKFLOWS` maps job.yml's `workflow.type` to the class; add a workflow here to make it usable. A workflow
talks only to `base.Federation` and keeps any state of its own through `Workflow.state`/`restore`.
"""

from __future__ import annotations

from flctl.node.workflows.base import Workflow
from flctl.node.workflows.cross_site_eval import CrossSiteEval
from flctl.node.workflows.cyclic import Cyclic
from flctl.node.workflows.data_check import DataCheck
from flctl.node.workflows.ditto import Ditto
from flctl.node.workflows.fedavg import FedAvg
from flctl.node.workflows.fedavgm import FedAvgM
from flctl.node.workflows.fedbuff import FedBuff
from flctl.node.workflows.fedopt import FedOpt
from flctl.node.workflows.flower import FlowerApp
from flctl.node.workflows.forest import Forest
from flctl.node.workflows.inference import Inference
from flctl.node.workflows.kmeans import KMeans
from flctl.node.workflows.psi import Psi
from flctl.node.workflows.scaffold import Scaffold
from flctl.node.workflows.split_nn import SplitNN
from flctl.node.workflows.statistics import Statistics
from flctl.node.workflows.swarm import Swarm
from flctl.node.workflows.xgboost import XGBoost

WORKFLOWS: dict[str, type[Workflow]] = {cls.type_name: cls for cls in (FedAvg, FedAvgM, FedOpt, Scaffold, Cyclic, Swarm,
                                                                     CrossSiteEval, Statistics, Psi, DataCheck,
                                                                     SplitNN, KMeans, Ditto, XGBoost, Forest, FedBuff,
                                                                     FlowerApp, Inference)}
