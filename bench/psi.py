"""Private set intersection's cost: 3 sites of N IDs each, the `psi` workflow relaying the sites' real OpenMined
ECDH PSI messages (each site a `PsiParty`, the Client API's own site side), in one process.

Sets: site-1 holds IDs [0, N), site-2 [N/4, N + N/4), site-3 [N/2, N + N/2): the running intersection after
site-2 has 0.75 N IDs and the final one N/2. Printed per N: wall time of the whole job (the sites' ECDH work runs
one after another, as the protocol does: each step waits for the one before), each site's busy time, and the
bytes moved, every PSI message relayed (site to server plus server to site, so what the server's network carries
counts both ways), with the final intersection checked against Python's.

The figure leaves out gRPC itself: on a real federation each message also crosses the network twice (site to
server to site); at the local federation's 160-280 MB/s a 35 MB message adds about 0.3 s each way.

    .venv/bin/python bench/psi.py                     # N = 100,000
    .venv/bin/python bench/psi.py 100000 1000000      # also a million (40 min on the loaded 2-core machine)

Run it with the interpreter that has flctl installed (and the privacy extra: openmined.psi).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from flctl.node.client.psi import PsiParty
from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskResult
from flctl.node.workflows.psi import Psi, PsiArgs
from flctl.node.workflows.state import WorkflowState


class RelayCounter:
    """A `Federation` whose sites are `PsiParty`s in this process; counts the bytes relayed and each site's time."""

    job_id = "bench"

    def __init__(self, parties: dict[str, PsiParty]) -> None:
        self.parties = parties
        self.bytes = 0
        self.busy = dict.fromkeys(parties, 0.0)
        self.report: dict[str, Any] = {}
        self.started = time.perf_counter()

    def sites(self) -> list[str]:
        return list(self.parties)

    def send(self, task: Task, sites: Sequence[str], timeout_s: float) -> Iterator[TaskResult | SiteFailure]:
        for site in sites:
            self.bytes += 2 * sum(value.nbytes for value in task.params.values())  # server -> site, and site -> server
            start = time.perf_counter()
            params, meta = self.parties[site].answer(task.kind.value, task.params, task.meta)
            self.busy[site] += time.perf_counter() - start
            yield TaskResult(site, params, 0, {}, meta)

    def save_report(self, name: str, report: dict[str, Any]) -> None:
        self.report = report

    def record_round(self, round_no: int, metrics: dict[str, dict[str, float]]) -> None:
        pass

    def log(self, message: str) -> None:
        print(f"  {time.perf_counter() - self.started:7.1f} s  {message}", flush=True)  # progress of a long run

    def save_model(self, name: str, params: Params, saved_as: str = "") -> None:
        pass

    def load_model(self, name: str) -> Params:
        return {}

    def job_file(self, path: str) -> bytes:
        raise OSError(path)

    def save_state(self, name: str, state: WorkflowState) -> None:
        pass


def run(n: int) -> None:
    sets = {"site-1": range(0, n), "site-2": range(n // 4, n + n // 4), "site-3": range(n // 2, n + n // 2)}
    with tempfile.TemporaryDirectory() as tmp:
        parties = {site: PsiParty(lambda ids=ids: [f"id-{i}" for i in ids], Path(tmp) / site)
                   for site, ids in sets.items()}
        fed = RelayCounter(parties)
        start = time.perf_counter()
        Psi(PsiArgs()).run(fed, None)
        wall = time.perf_counter() - start
        got = (Path(tmp) / "site-1" / "psi" / "intersection.txt").read_text().splitlines()
    want = sorted(f"id-{i}" for i in range(n // 2, n))
    assert got == want, "the intersection is wrong"
    busy = ", ".join(f"{site} {seconds:.1f} s" for site, seconds in fed.busy.items())
    print(f"3 sites x {n:,} IDs: {wall:.1f} s wall, {fed.bytes / 1e6:.1f} MB relayed (both ways), "
          f"intersection {len(got):,} (exact); busy: {busy}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100_000], help="IDs per site (default 100000)")
    for n in parser.parse_args(argv).sizes:
        run(n)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
