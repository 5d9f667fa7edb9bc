"""Ask every site one step and wait for all their answers: the round trip the k-means and XGBoost workflows make
many times per job, where each step needs every site's part (a sum over sites is only right when it is whole)."""

from __future__ import annotations

from collections.abc import Callable

from flctl.node.jobs.tasks import SiteFailure, Task, TaskResult
from flctl.node.workflows.base import Federation, WorkflowError
from flctl.node.workflows.fedavg import failure_details


def gather(fed: Federation, task: Task, sites: list[str], timeout_s: float, what: str,
           check: Callable[[TaskResult], None] | None = None) -> dict[str, TaskResult]:
    """Send `task` to `sites`; each site's answer. `check` raises ValueError for an unusable answer. Every site must
    answer usably: otherwise WorkflowError naming `what` (the step), who failed and why, and who stayed silent."""
    answers: dict[str, TaskResult] = {}
    failed: dict[str, str] = {}
    for answer in fed.send(task, sites, timeout_s):
        if answer.site not in sites or answer.site in answers or answer.site in failed:
            fed.log(f"{what}: ignored an unexpected or repeated answer from {answer.site}")
            continue
        if isinstance(answer, SiteFailure):
            failed[answer.site] = answer.reason
            continue
        if check is not None:
            try:
                check(answer)
            except ValueError as exc:
                failed[answer.site] = f"sent an unusable answer: {exc}"
                continue
        answers[answer.site] = answer
    if len(answers) < len(sites):
        silent = [site for site in sites if site not in answers and site not in failed]
        raise WorkflowError(f"{what}: {len(answers)} of {len(sites)} sites answered within {timeout_s:g} s, and "
                            "every site's part is needed" + failure_details(failed, silent))
    return answers
