"""What a site lets leave it of an `inference` task's answer: only the metrics the job's job.yml declares
(`workflow.args.returns`), as finite numbers, and the number of records it ran over; no params, no meta.

The rule is applied in the site's job process (in the simulator's main process for a simulated site), never in the
script's, before the site's privacy filters (which then apply as to any answer). The declared names come from the
job's own job.yml, which its submitter signed, not from the task the server sent: a server cannot ask for more. A
site that knows no declaration for the job lets no metric out (fail closed).

What the script writes (predictions, generated text) stays in `fl.output_dir()`, at the site: at a real site
`<site workspace>/jobs/<job id>/job/outputs/` (removed with the job's workspace after the site's retention_days),
in a simulation `<workspace>/<job name>/sites/<site>/outputs/`. Nothing of it is sent: `flctl job download` fetches
what the server holds, which never includes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flctl.node.client import api_wire as wire
from flctl.node.workflows.base import WorkflowArgs
from flctl.node.workflows.inference import InferenceArgs, declared

log = logging.getLogger("flctl.site.filters")  # its records reach the job's log at the site (FilterNotes)


def declared_returns(args: WorkflowArgs) -> tuple[str, ...]:
    """The metrics an `inference` job lets leave a site; () for any other job (its inference tasks, if a server
    sent any, would release no metric)."""
    return tuple(args.returns) if isinstance(args, InferenceArgs) else ()


def release(answer: wire.Result, returns: Sequence[str], site: str) -> wire.Result:
    """The answer that leaves `site` for the script's `answer`: its declared metrics and num_examples, nothing else
    (the caller sends an empty model as its params). What was dropped is logged by name, never by value."""
    kept, dropped = declared(answer.metrics, returns)
    if answer.meta:
        dropped.append("meta " + ", ".join(sorted(answer.meta)))
    if dropped:
        log.info("inference at %s: kept %s; dropped before the answer left the site: %s", site,
                 ", ".join(sorted(kept)) or "no metric", "; ".join(dropped))
    return wire.Result(answer.task_id, max(int(answer.num_examples), 0), kept, {})
