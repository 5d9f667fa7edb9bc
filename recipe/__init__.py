"""Jobs in Python (the Recipe API): build a job, run it in the simulator, the local federation or production, or
export it as the job folder `flctl job submit` takes.

    from flctl.recipe import FedAvgJob, SimEnv, LocalEnv, ProdEnv

    job = FedAvgJob(name="hello", script="app/train.py", rounds=3, min_sites=2, initial_model=Net())
    run = job.run(SimEnv(sites=2))          # or LocalEnv(sites=2), ProdEnv(kit="admin@org")
    run.wait(); print(run.status(), run.metrics()[-1]); weights = run.model()
    job.export("hello-job")                 # flctl job submit hello-job

One class per workflow (`FedAvgJob`, `FedAvgMJob`, `FedOptJob`, `ScaffoldJob`, `CyclicJob`, `SwarmJob`,
`FedBuffJob`, `CrossSiteEvalJob`, `InferenceJob`, and `Job(workflow=...)` for any registered one); each takes its
workflow's own arguments (the fields of that workflow's `Args`, as in job.yml's `workflow.args`). The environments
run the same code the CLI runs: `SimEnv` is `flctl simulate`, `LocalEnv` is `flctl poc prepare/start` and `flctl job
submit`, `ProdEnv` is `flctl job submit --kit`; every run is a job folder exported and checked exactly as `flctl job
submit` checks one. Mistakes are `RecipeError`s (`RecipeInputError`, `EnvironmentUnavailable`, `RunFailed`), one
sentence each.
"""

from __future__ import annotations

from flctl.recipe.envs import Env, LocalEnv, ProdEnv, SimEnv
from flctl.recipe.errors import EnvironmentUnavailable, RecipeError, RecipeInputError, RunFailed
from flctl.recipe.jobs import (
    CrossSiteEvalJob,
    CyclicJob,
    FedAvgJob,
    FedAvgMJob,
    FedBuffJob,
    FedOptJob,
    InferenceJob,
    Job,
    ScaffoldJob,
    SwarmJob,
)
from flctl.recipe.runs import FederationRun, Run, SimRun

__all__ = ["CrossSiteEvalJob", "CyclicJob", "Env", "EnvironmentUnavailable", "FedAvgJob", "FedAvgMJob",
           "FedBuffJob", "FedOptJob", "FederationRun", "InferenceJob", "Job", "LocalEnv", "ProdEnv", "RecipeError",
           "RecipeInputError", "Run", "RunFailed", "ScaffoldJob", "SimEnv", "SimRun", "SwarmJob"]
