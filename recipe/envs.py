"""Where a recipe's job runs: the simulator (`SimEnv`), the local federation (`LocalEnv`), a provisioned federation
(`ProdEnv`). Each runs the exported job folder through the code the CLI runs: `flctl simulate`'s `simulate`,
`flctl poc prepare/start`'s `flctl.cloud.local`, `flctl job submit`'s `AdminClient.submit_job`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from flctl.recipe.errors import EnvironmentUnavailable, RecipeError, RecipeInputError

if TYPE_CHECKING:
    from flctl.node.admin.admin_client import AdminClient
    from flctl.node.jobs.job_spec import Resources
    from flctl.node.simulator.runtime import LocalEngine
    from flctl.recipe.jobs import Job
    from flctl.recipe.runs import FederationRun, Run, SimRun

DEFAULT_VALID_DAYS = 7.0


class Env(ABC):
    """Somewhere a job runs."""

    @abstractmethod
    def run(self, job: Job) -> Run:
        """Run `job` here; its run handle."""


@dataclass
class SimEnv(Env):
    """The simulator (`flctl simulate`): `sites` simulated sites (default: those the job names, else
    max(2, min_sites)) shared by `workers` processes (default: one per CPU core, at most one per site). Results
    go to `workspace`/<job name>/ (default: `flctl simulate`'s). `data` are paths the scripts may read; `privacy` a
    site's privacy.yml every simulated site applies; `gpus` ("0,1", NVIDIA FLARE's SimEnv gpu_config) the GPUs the
    sites' workers are spread over (`flctl simulate --gpus`). `run` returns once the simulation has ended."""

    sites: int | None = None
    workers: int | None = None
    workspace: str | os.PathLike[str] | None = None
    data: Sequence[str | os.PathLike[str]] = ()
    privacy: str | os.PathLike[str] | None = None
    gpus: str | None = None

    def run(self, job: Job) -> SimRun:
        from flctl.node.config.privacy import load_privacy
        from flctl.node.jobs.job_spec import load_job
        from flctl.node.simulator.runtime import SimulationError, default_workspace, simulate, site_names
        from flctl.provisioner.errors import KitError
        from flctl.recipe.runs import SimRun

        if self.sites is not None and self.sites < 1:
            raise RecipeInputError(f"SimEnv: sites={self.sites}; simulate at least 1 site")
        if self.workers is not None and self.workers < 1:
            raise RecipeInputError(f"SimEnv: workers={self.workers}; use at least 1 worker process")
        try:
            rules = load_privacy(Path(self.privacy)) if self.privacy is not None else None
        except KitError as exc:
            raise RecipeInputError(f"SimEnv: {exc}") from None
        root = Path(self.workspace).expanduser() if self.workspace is not None else default_workspace()
        with tempfile.TemporaryDirectory(prefix="flctl-recipe-") as tmp:
            loaded = load_job(job.export(Path(tmp) / job.name))
            try:
                names = site_names(loaded, self.sites)
                engine = self._on_gpus(loaded.spec.resources, len(names))
                result = simulate(loaded, names, root, self.workers, None, [os.fspath(p) for p in self.data], rules,
                                  engine=engine)
            except (SimulationError, ValueError) as exc:  # GpuSpreadError is a ValueError
                raise RecipeInputError(f"SimEnv: {exc}") from None
        return SimRun(result)

    def _on_gpus(self, resources: Resources, sites: int) -> LocalEngine | None:
        """The local engine spread over `gpus` (`flctl.node.simulator.gpu_spread`); None without them."""
        if self.gpus is None:
            return None
        from flctl.node.simulator.gpu_spread import check_listed, parse_gpus, spread
        from flctl.node.simulator.runtime import LocalEngine
        from flctl.node.site.placement import Ask

        listed = parse_gpus(self.gpus, "gpus")
        return LocalEngine(self.workers, spread(listed, sites, Ask.of(resources), check_listed(listed)).groups)


@dataclass
class ProdEnv(Env):
    """A provisioned federation, acted on with an admin's startup kit (`flctl job submit --kit KIT`). Sites start
    the job only within `valid_days` of its signing."""

    kit: str | os.PathLike[str]
    valid_days: float = DEFAULT_VALID_DAYS
    timeout_s: float = 30.0

    def run(self, job: Job) -> FederationRun:
        return submit(job, Path(self.kit).expanduser(), self.valid_days, self.timeout_s)


@dataclass
class LocalEnv(Env):
    """The local federation (`flctl poc`): the one in `workspace` (default: as `flctl poc` finds it: the
    FLCTL_POC_WORKSPACE variable, else the last one prepared, else ~/.local/share/flctl/poc), prepared with `sites`
    sites if there is none yet, started if it is not running (and then left running, as `flctl poc start` leaves
    it: `stop()` stops it)."""

    sites: int = 2
    workspace: str | os.PathLike[str] | None = None
    start_timeout_s: float = 60.0
    valid_days: float = DEFAULT_VALID_DAYS
    _root: Path | None = field(default=None, init=False, repr=False)

    def run(self, job: Job) -> FederationRun:
        return submit(job, self.up(), self.valid_days, 30.0)

    def up(self) -> Path:
        """Prepare and start the local federation as needed; its admin kit."""
        from flctl.cloud.local import LocalError, prepare, start, status
        from flctl.cloud.local_context import remember
        from flctl.cloud.local_plan import read_state

        if self.sites < 1:
            raise RecipeInputError(f"LocalEnv: sites={self.sites}; a federation needs at least 1 site")
        root = self.root()
        try:
            state = read_state(root)
            if state is None:
                state = prepare(root, self.sites)
                remember(root)  # as `flctl poc prepare` does
            elif len(state.sites) < self.sites:
                raise RecipeInputError(f"LocalEnv: the local federation in {root} has {len(state.sites)} sites, not "
                                       f"{self.sites}; ask for fewer, or remove it (`flctl poc stop`, `flctl poc "
                                       "clean`) and run again")
            alive = [node.alive for node in status(root, state)]
            if not all(alive):
                if any(alive):
                    raise EnvironmentUnavailable(f"LocalEnv: only part of the local federation in {root} runs; "
                                                 "stop it with `flctl poc stop` and run again", 1)
                start(root, state, self.start_timeout_s)
        except LocalError as exc:
            raise EnvironmentUnavailable(f"LocalEnv: {exc}", 2 if exc.kind == "usage" else 1) from None
        return state.admin_kit(root)

    def stop(self) -> None:
        """Stop the local federation (`flctl poc stop`)."""
        from flctl.cloud.local import LocalError, require_state, stop

        root = self.root()
        try:
            stop(root, require_state(root))
        except LocalError as exc:
            raise EnvironmentUnavailable(f"LocalEnv: {exc}", 1) from None

    def root(self) -> Path:
        """The local federation's folder."""
        if self._root is None:
            from flctl.cloud.local_plan import default_workspace

            given = Path(self.workspace) if self.workspace is not None else default_workspace()
            self._root = given.expanduser().absolute()
        return self._root


def submit(job: Job, kit: Path, valid_days: float, timeout_s: float) -> FederationRun:
    """Export `job`, submit it with the admin `kit` (as `flctl job submit` does) and return its run."""
    from flctl.recipe.runs import FederationRun

    with tempfile.TemporaryDirectory(prefix="flctl-recipe-") as tmp:
        folder = job.export(Path(tmp) / job.name)
        with admin_client(kit, timeout_s) as admin, node_errors():
            job_id = admin.submit_job(folder, valid_for_s=valid_days * 86400)
    return FederationRun(kit, job_id, job.name, timeout_s)


@contextlib.contextmanager
def admin_client(kit: Path, timeout_s: float) -> Iterator[AdminClient]:
    """An AdminClient for `kit` (the CLI's); EnvironmentUnavailable (exit 2) when the kit is missing or invalid."""
    from flctl.node.admin.admin_client import AdminClient
    from flctl.provisioner.errors import KitError

    if not kit.is_dir():
        raise EnvironmentUnavailable(f"no admin startup kit at {kit}; pass kit= the folder `flctl provision` made "
                                     "for an admin (startup/ holds console.yml)", 2)
    try:
        client = AdminClient.from_kit(kit, timeout_s=timeout_s)
    except KitError as exc:
        raise EnvironmentUnavailable(str(exc), 2) from None
    with client:
        yield client


@contextlib.contextmanager
def node_errors() -> Iterator[None]:
    """The admin client's errors as the recipe's: cannot connect -> EnvironmentUnavailable (exit 3); a job the
    server refuses -> RecipeInputError; the rest RecipeError with the CLI's exit code (4 not permitted, 5 timed
    out, 1 otherwise)."""
    from flctl.node import errors

    try:
        yield
    except errors.ConnectionFailed as exc:
        raise EnvironmentUnavailable(str(exc), 3) from None
    except (errors.JobError, errors.BadRequest) as exc:
        raise RecipeInputError(str(exc)) from None
    except errors.NodeError as exc:
        error = RecipeError(str(exc))
        error.exit_code = 4 if isinstance(exc, errors.NotPermitted) else 5 if isinstance(exc, errors.TimedOut) else 1
        raise error from None
