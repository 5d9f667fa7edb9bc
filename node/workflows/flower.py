"""The `flower` workflow: a Flower app's ServerApp run by Flower's own SuperLink in the server's job process, each
site's SuperNode relayed to it over flctl's channels (`flower_fleet` tasks, one open per site at a time).

job.yml:
    workflow: {type: flower, args: {app: app, run_config: {num-server-rounds: 3}}}
    app: {command: [python, -m, flctl.node.flower.supernode_relay]}
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
from pydantic import Field

from flctl.node.flower.fleet_calls import FleetCall, FleetCallError, FleetReply, decode_calls, encode_replies
from flctl.node.flower.flower_python import FlowerMissing, flower_python
from flctl.node.flower.node_binding import NodeBinding
from flctl.node.flower.run_log import RunLog
from flctl.node.flower.server_confinement import confinement, job_isolation
from flctl.node.flower.superlink_runner import FlowerRunError, FlwrRun, SuperLink
from flctl.node.jobs.tasks import Params, SiteFailure, Task, TaskKind
from flctl.node.workflows.base import AsyncFederation, Federation, Workflow, WorkflowArgs, WorkflowError

TASK_TIMEOUT_S = 120.0
"""How long a site's relay may take to answer one `flower_fleet` task (it answers within about a second)."""
STEP_S = 0.05


class FlowerArgs(WorkflowArgs):
    """job.yml `workflow.args` of a `flower` job."""

    app: str = Field("app", min_length=1, description="The job's folder holding the Flower app (its "
                     "pyproject.toml names the ServerApp and the ClientApp), relative to the job")
    run_config: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Values that override the app's [tool.flwr.app.config], as "
        "`flwr run --run-config` does")
    partitions: bool = Field(True, description="Give each site's SuperNode the node config `partition-id=I "
                             "num-partitions=N` (sites in name order), as Flower's Simulation Engine numbers its nodes")
    timeout_s: float = Field(3600, gt=0, description="The longest the Flower run may take, in seconds")

    @property
    def rounds(self) -> int:
        """The run's rounds, when run_config gives `num-server-rounds` (Flower's convention), for flctl's progress;
        else 0 (not known to flctl: the ServerApp decides)."""
        value = self.run_config.get("num-server-rounds", 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0


def toml_value(value: str | int | float | bool) -> str:
    """`value` as TOML writes it (for `--run-config k=v`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string
    return repr(value)


class FlowerApp(Workflow):
    """Runs a Flower app (Flower 1.42, its own venv) on the federation; the final model is what the ServerApp
    saved as `$FLCTL_FLOWER_OUTPUT/final.npz`, when it did."""

    type_name = "flower"
    Args = FlowerArgs

    def run(self, fed: Federation, initial: Params | None, start_round: int = 0) -> Params:
        args = cast(FlowerArgs, self.args)
        if start_round:
            raise WorkflowError("a Flower run cannot resume after a server restart (Flower keeps its state in the "
                                "SuperLink that stopped); submit the job again")
        job_dir: Path | None = getattr(fed, "job_dir", None)
        if job_dir is None or not hasattr(fed, "post"):
            raise WorkflowError("a Flower app runs on a federation (flctl poc or production), not in flctl simulate; "
                                "use `flwr run` for a simulation")
        sites = sorted(fed.sites())
        if len(sites) < self.min_sites:
            raise WorkflowError(f"{len(sites)} sites joined, fewer than min_sites {self.min_sites}")
        try:
            python = flower_python()
        except FlowerMissing as exc:
            raise WorkflowError(f"the server cannot run Flower apps: {exc}") from None
        work = job_dir / "flower"
        app = _app_folder(job_dir, work, args.app)
        run: FlwrRun | None = None
        link: SuperLink | None = None
        relays: SiteRelays | None = None
        try:
            policy = job_isolation(job_dir)
            wrap, base_env = confinement(policy, python, work)
            link = SuperLink(python, work, wrap=wrap, base_env=base_env)
            link.start()
            fed.log(f"Flower's SuperLink on 127.0.0.1:{link.port} ({python.parent.parent}), the ServerApp "
                    + ("confined as job code" if base_env is not None else f"unconfined (job_isolation: {policy})"))
            relays = SiteRelays(cast(AsyncFederation, fed), sites, link, self.min_sites, args.partitions)
            relays.start()
            run = FlwrRun(link, app, [f"{k}={toml_value(v)}" for k, v in args.run_config.items()])
            log = self._follow(fed, run, relays, time.monotonic() + args.timeout_s)
            code = run.wait()
        except FlowerRunError as exc:
            raise WorkflowError(str(exc)) from None
        finally:
            if run is not None:
                run.stop()
            if link is not None:
                link.stop()
            if relays is not None:
                relays.close()
        if code != 0 or log.errors:
            how = f"flwr run exited with code {code}" if code else "the ServerApp failed"
            said = " | ".join(log.errors[-3:] or ["see the job's log"])
            raise WorkflowError(f"the Flower run failed ({how}): {said}")
        final = _final_model(link.output)
        if final:
            fed.save_model("final", final)
        fed.log(f"Flower run {log.run_id} finished: {log.rounds_total} rounds, final model "
                + (f"of {len(final)} arrays" if final else "not saved (the ServerApp wrote no final.npz)"))
        return final

    def _follow(self, fed: Federation, run: FlwrRun, relays: SiteRelays, deadline: float) -> RunLog:
        """Relay the sites and log the run's output until it ends; its `RunLog`."""
        log = RunLog()
        while True:
            relays.step(STEP_S)
            for raw in run.lines(0.0):
                if raw is None:
                    log.end()
                    self._record(fed, log)
                    return log
                line = log.feed(raw)
                relays.round = max(log.current_round - 1, 0)
                if line.strip():
                    fed.log(f"flower: {line}")
            self._record(fed, log)
            if time.monotonic() > deadline:
                raise WorkflowError("the Flower run took longer than its timeout_s")

    @staticmethod
    def _record(fed: Federation, log: RunLog) -> None:
        for round_no, metrics in log.rounds():
            fed.record_round(round_no, {"flower": metrics} if metrics else {})


class SiteRelays:
    """One open `flower_fleet` task per site: each answer's calls are replayed on the SuperLink and the replies go
    out in that site's next task; a call that speaks for another site's Flower node is refused (`NodeBinding`)."""

    def __init__(self, fed: AsyncFederation, sites: list[str], link: SuperLink, min_sites: int,
                 partitions: bool) -> None:
        self._fed = fed
        self._sites = sites
        self._link = link
        self._min_sites = min_sites
        self._partitions = partitions
        self._open: dict[str, str] = {}  # task id -> site
        self.round = 0  # the Flower round under way (from 0): the relay's tasks carry it, so `job ls` shows it
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="flower-replay")
        self._binding = NodeBinding()

    def start(self) -> None:
        for index, site in enumerate(self._sites):
            config = f"partition-id={index} num-partitions={len(self._sites)}" if self._partitions else ""
            self._post(site, [], {"node_config": config})

    def _post(self, site: str, replies: list[FleetReply], extra: dict[str, Any] | None = None) -> None:
        params, meta = encode_replies(replies)
        task = Task(TaskKind.FLOWER_FLEET, self.round, params, {**meta, **(extra or {})})
        self._open[self._fed.post(task, site, TASK_TIMEOUT_S)] = site

    def step(self, wait_s: float) -> None:
        """Handle the next site answer, if one comes within `wait_s`."""
        got = self._fed.next_answer(wait_s)
        if got is None:
            return
        task_id, answer = got
        site = self._open.pop(task_id, None)
        if site is None:
            return
        if isinstance(answer, SiteFailure):
            self._lose(site, answer.reason)
            return
        if answer.meta.get("supernode_exit") is not None:
            self._lose(site, f"its Flower SuperNode exited with code {answer.meta['supernode_exit']}")
            return
        try:
            calls = decode_calls(answer.params, answer.meta)
        except FleetCallError as exc:
            self._lose(site, f"it sent a malformed Flower call: {exc}")
            return
        self._post(site, list(self._pool.map(lambda call: self._answer(site, call), calls)))

    def _answer(self, site: str, call: FleetCall) -> FleetReply:
        """`call` replayed on the SuperLink, unless it speaks for a Flower node that is not `site`'s (403)."""
        refusal = self._binding.check_call(site, call)
        if not refusal:
            reply = self._link.replay(call)
            refusal = self._binding.check_reply(site, call, reply)
            if not refusal:
                return reply
        self._fed.log(f"{site}: a Flower call refused: {refusal}")
        return FleetReply(call.id, 403, refusal.encode(), "text/plain")

    def close(self) -> None:
        """No more replays (the sites' open tasks end with the job)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _lose(self, site: str, reason: str) -> None:
        self._fed.log(f"{site} left the Flower run: {reason}")
        left = len(set(self._open.values()))
        if left < self._min_sites:
            raise WorkflowError(f"{site} left the Flower run ({reason}); {left} sites remain, fewer than "
                                f"min_sites {self._min_sites}")


def _app_folder(job_dir: Path, work: Path, app: str) -> Path:
    """The Flower app's folder, unpacked from the job's bundle under `work`; WorkflowError when it has none."""
    from flctl.node.jobs.bundle import extract_bundle

    target = work / "job"
    if not target.exists():
        extract_bundle((job_dir / "bundle.zip").read_bytes(), target)
    folder = (target / app).resolve()
    if not folder.is_relative_to(target.resolve()) or not (folder / "pyproject.toml").is_file():
        raise WorkflowError(f"the job has no Flower app in {app}/ (a pyproject.toml naming the ServerApp and "
                            "ClientApp, as `flwr new` makes it)")
    return folder


def _final_model(output: Path) -> Params:
    """The arrays the ServerApp saved as `final.npz` in `$FLCTL_FLOWER_OUTPUT` ({} when none)."""
    path = output / "final.npz"
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as saved:
        return {name: np.asarray(saved[name]) for name in saved.files}
