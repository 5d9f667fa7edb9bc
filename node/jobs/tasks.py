"""What travels between a workflow and the sites, as plain domain values (no protobuf here).

Parameters are a flat mapping of tensor name to numpy array; they travel as safetensors bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is not imported to check a job at submit (the CLI stays quick)
    import numpy as np

Params = dict[str, "np.ndarray"]

PARAMS_TYPE = "params_type"
"""The key of an answer's meta that says what its params are: absent or "full", the model; "diff", what the site's
training added to the model it received."""
PARAMS_TYPES = ("full", "diff")

SCAFFOLD_C = "@scaffold_c/"
"""A task's tensors named `@scaffold_c/<name>` are SCAFFOLD's server control variate for the model's `<name>`,
not part of the model: the Client API keeps them apart from what the script receives."""
SCAFFOLD_DC = "@scaffold_dc/"
"""An answer's tensors named `@scaffold_dc/<name>` are the site's SCAFFOLD control-variate update."""


class TaskKind(StrEnum):
    """What a task asks of a site; its value travels to the site and reaches the script as `model.task`. A new
    kind (`statistics`, a swarm step…) is a new member."""

    TRAIN = "train"
    """Train from the task's params; answer with a model (full, or an update) and metrics."""
    EVALUATE = "evaluate"
    """Evaluate the task's params on local data; answer with metrics only."""
    SUBMIT_MODEL = "submit_model"
    """Answer with the site's own best local model."""
    AGGREGATE = "aggregate"
    """Answer with the weighted mean of the sites' models the task carries (a swarm round's aggregator): the
    Client API does it in the site's script process, the script never sees the task."""
    PSI_ITEMS = "psi_items"
    """Private set intersection (the `psi` workflow; `fl.psi()` answers these five at the site): load and check the
    site's IDs; answer with their count and type only."""
    PSI_REQUEST = "psi_request"
    """As the PSI client, make a request from the site's own or current set (its key stays at the site)."""
    PSI_RESPONSE = "psi_response"
    """As the PSI server, answer the request the task carries with a setup and a response message (opaque bytes)."""
    PSI_INTERSECT = "psi_intersect"
    """As the PSI client, intersect: the current set becomes the intersection; answer with its size only."""
    PSI_DONE = "psi_done"
    """The current set is the intersection of all sites: write it to the job workspace (or the site's part failed,
    with the reason the task carries)."""
    SPLIT_FORWARD = "split_forward"
    """Split learning (the `split_nn` workflow), at a site holding features: first apply the gradient the task
    carries to the bottom model (the previous batch's), then answer with the bottom model's activations for the
    batch's rows."""
    SPLIT_STEP = "split_step"
    """Split learning, at the site holding the labels: from the feature sites' activations the task carries, run
    its own bottom model and the top model; when training, step and answer with the gradient of the loss with
    respect to each site's activations; answer with the batch's loss and accuracy."""
    SECURE = "secure"
    """A step of secure aggregation (`meta["step"]`: he_final, mask_keys, mask_shares, mask_unmask): the site's job
    process answers it itself (`flctl.node.secagg`), with keys the script never sees; the script never sees it."""
    STATISTICS = "statistics"
    """Compute figures over the site's data (`meta["step"]`: summary, spread, cohort, data_check); the script's data
    function answers it (`fl.serve_statistics`), and the site's privacy rules are applied to what it returns in the
    site's job process, outside the script (`flctl.node.site.statistics_release`)."""
    INFERENCE = "inference"
    """Run the task's model over the site's own data (the `inference` workflow): answer with metrics only; what the
    script writes (predictions) stays at the site, and of its answer only the metrics job.yml's `inference.returns`
    names leave it (`flctl.node.site.inference_release`)."""
    FLOWER_FLEET = "flower_fleet"
    """A Flower app's SuperNode traffic (the `flower` workflow, `flctl.node.flower`): the task carries the SuperLink's
    replies to the site's SuperNode, the answer its next Fleet API calls, both opaque protobuf bytes. A site whose
    privacy scope has filters refuses it: they cannot act on Flower's messages, and nothing leaves unfiltered."""

    @classmethod
    def parse(cls, value: str) -> TaskKind:
        """The kind named `value`; TaskError when this flctl does not know it (a newer server's kind)."""
        try:
            return cls(value)
        except ValueError:
            from flctl.node.errors import TaskError  # not at the top: a job's script imports this module, confined

            known = ", ".join(kind.value for kind in cls)
            raise TaskError(f"the server sent a task of kind {value!r}, which this site's flctl does not know "
                           f"(it knows {known}); upgrade flctl at this site") from None


OPAQUE_KINDS = frozenset({TaskKind.PSI_ITEMS, TaskKind.PSI_REQUEST, TaskKind.PSI_RESPONSE, TaskKind.PSI_INTERSECT,
                          TaskKind.PSI_DONE})
"""Kinds whose params are not a model but opaque messages (PSI's, encrypted under keys that never leave a site): a
site's privacy filters pass them unchanged, as noise or clipping would only break them and they reveal nothing."""


@dataclass
class Task:
    """One unit of work a workflow sends to sites. A task is addressed by the sites it is sent to: sent to one site,
    it is that site's alone (a cyclic or peer-to-peer step relays a result to the next site that way)."""

    kind: TaskKind
    round: int
    params: Params
    meta: dict[str, Any] = field(default_factory=dict)
    saved_as: str = ""
    """The name `params` were saved under with `Federation.save_model`, unchanged since, or "": a federation may
    then send that copy instead of writing the model once more."""


@dataclass
class TaskResult:
    """A site's answer to a task."""

    site: str
    params: Params
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SiteFailure:
    """A site could not answer a task (its script raised, it went offline, it refused the job)."""

    site: str
    reason: str
