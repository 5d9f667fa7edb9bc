"""Federated count, sum and mean under homomorphic encryption (`statistics` with `encryption: he`).

Each site answers the summary pass with its released counts and sums encrypted (one value per feature the job
names; its site codec does it in its job process, after the site's statistics rules); the server adds the
ciphertexts with its public context, then asks one site to decrypt the totals only (a `secure` step,
`he_decrypt_sum`; a site refuses to decrypt a sum of fewer than two sites). The report holds the global figures and,
for each site, only which features it released, refused or lacks: no site's own figures reach the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flctl.node.jobs.tasks import SiteFailure, Task, TaskKind
from flctl.node.secagg.payload import SecAggError, is_secure
from flctl.node.workflows.base import Federation, WorkflowError
from flctl.node.workflows.secure_sum import SECURE_META, HeRound

if TYPE_CHECKING:
    from flctl.node.workflows.statistics import StatisticsArgs


def compute_encrypted(fed: Federation, args: StatisticsArgs, min_sites: int) -> dict[str, Any]:
    """The statistics report of an `encryption: he` job (the form of `statistics.compute`'s, global figures only)."""
    from flctl.node.secagg.he import CiphertextSum

    he = HeRound(fed)
    sites = fed.sites()
    features = list(args.features)
    task = Task(TaskKind.STATISTICS, 0, {}, meta={"step": "summary", "features": features,
                                                  "min_count": args.min_count, SECURE_META: "he"})
    total = CiphertextSum(he.keys)
    failed: dict[str, str] = {}
    shown: dict[str, dict[str, Any]] = {}
    for answer in fed.send(task, sites, args.timeout_s):
        if isinstance(answer, SiteFailure):
            failed[answer.site] = answer.reason
            continue
        figures = answer.meta.get("statistics")
        if not isinstance(figures, dict) or figures.get("error"):
            failed[answer.site] = str((figures or {}).get("error") or "answered without statistics")
            continue
        if not figures.get("encrypted") or not is_secure(answer.params):
            failed[answer.site] = "sent its statistics in clear, but the job asks for encryption: he; not used"
            continue
        try:
            total.add(answer.params, 1, answer.site)
        except SecAggError as exc:
            failed[answer.site] = str(exc)
            continue
        shown[answer.site] = figures
    for site, reason in sorted(failed.items()):
        fed.log(f"statistics: {site} failed: {reason}")
    if total.count < max(min_sites, 2):
        raise WorkflowError(f"only {total.count} of {len(sites)} sites sent encrypted statistics; an encrypted sum "
                            f"needs {max(min_sites, 2)} (min_sites, and at least two: one site's sum is its own)"
                            + "".join(f"; {site}: {why}" for site, why in sorted(failed.items())))
    totals, decrypted_by = _decrypted(fed, total.result(), sorted(shown), args.timeout_s)
    wanted = args.statistics.wanted()
    results: dict[str, dict[str, Any]] = {"global": {}}
    for i, name in enumerate(features):
        count, summed = totals["count"][i], totals["sum"][i]
        figures = {"count": round(count), "sum": summed, "mean": summed / count if count > 0 else None}
        results["global"][name] = {k: v for k, v in figures.items() if k in wanted and v is not None}
    fed.log(f"statistics: encrypted; {total.count} sites' counts and sums added as ciphertexts, the totals decrypted "
            f"by {decrypted_by}")
    return {"kind": "statistics", "sites": sites, "features": features, "statistics": wanted, "results": results,
            "refused": {s: f.get("refused") for s, f in shown.items() if f.get("refused")},
            "missing": {s: f.get("missing") for s, f in shown.items() if f.get("missing")}, "notes": {},
            "failed": failed, "policy": {s: f["policy"] for s, f in shown.items() if isinstance(f.get("policy"), dict)},
            "sketch_bins": args.sketch_bins, "encryption": "he"}


def _decrypted(fed: Federation, summed: Any, sites: list[str], timeout_s: float) -> tuple[dict[str, list[float]], str]:
    """The totals, decrypted by the first of `sites` that will; WorkflowError when none does."""
    task = Task(TaskKind.SECURE, 0, summed, meta={"step": "he_decrypt_sum", SECURE_META: "he"})
    reasons = []
    for site in sites:
        for answer in fed.send(task, [site], timeout_s):
            totals = answer.meta.get("totals") if not isinstance(answer, SiteFailure) else None
            if isinstance(totals, dict) and isinstance(totals.get("count"), list) and isinstance(totals.get("sum"),
                                                                                                 list):
                return {"count": [float(v) for v in totals["count"]], "sum": [float(v) for v in totals["sum"]]}, site
            reasons.append(f"{site}: {answer.reason if isinstance(answer, SiteFailure) else 'no totals'}")
    raise WorkflowError("no site decrypted the encrypted totals: " + "; ".join(reasons))
