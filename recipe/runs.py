"""A run of a recipe's job: its status, its end, its metrics, its artifacts and its final model, the same whether
it ran in the simulator (`SimRun`) or on a federation (`FederationRun`, through the admin client the CLI uses)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flctl.recipe.errors import RecipeError, RunFailed

if TYPE_CHECKING:
    import numpy as np

    from flctl.node.admin.admin_types import JobInfo
    from flctl.node.simulator.runtime import SimulationResult

FINAL_MODEL = Path("models") / "final.safetensors"


class Run(ABC):
    """A job that was started somewhere."""

    job_id: str
    name: str

    @abstractmethod
    def status(self) -> str:
        """SUBMITTED, RUNNING, FINISHED, FAILED or ABORTED."""

    @abstractmethod
    def wait(self, timeout_s: float | None = None) -> str:
        """Block until the job has ended (RecipeError, exit code 5, after `timeout_s`); its final status."""

    @abstractmethod
    def artifacts(self) -> Path:
        """A folder holding what the job left (models/, metrics.json, logs/), as `flctl job download` writes it;
        the job must have ended."""

    def download(self, folder: str | os.PathLike[str]) -> Path:
        """Copy the job's artifacts into `folder`/<job id>/ (as `flctl job download -o FOLDER` does); that folder."""
        target = Path(folder).expanduser() / self.job_id
        shutil.copytree(self.artifacts(), target, dirs_exist_ok=True)
        return target

    def metrics(self) -> list[dict[str, Any]]:
        """Every metric the job recorded: {"site", "round", "name", "value", "step"} (step None for per-round
        results, as given for what a script logged with fl.log)."""
        return list(json.loads((self.artifacts() / "metrics.json").read_text()))

    def model(self) -> dict[str, np.ndarray]:
        """The job's final global model, name -> numpy array; RunFailed when it left none (it failed first)."""
        from flctl.node.wire import tensors

        path = self.artifacts() / FINAL_MODEL
        if not path.is_file():
            raise RunFailed(f"job {self.name} ({self.job_id}) ended {self.status()} without a final model")
        return tensors.read_file(path)


class SimRun(Run):
    """A simulation: it has ended when `SimEnv.run` returns."""

    def __init__(self, result: SimulationResult) -> None:
        self.result = result
        self.name = result.job
        self.job_id = result.job  # a simulation's folder is named after the job
        self.error = result.error

    def status(self) -> str:
        return str(self.result.status)

    def wait(self, timeout_s: float | None = None) -> str:
        return self.status()

    def artifacts(self) -> Path:
        return self.result.job_dir

    def __repr__(self) -> str:
        return f"SimRun({self.name!r}, {self.status()}, {str(self.result.job_dir)!r})"


class FederationRun(Run):
    """A job submitted to a federation (local or production); every call goes through the admin client."""

    def __init__(self, kit: Path, job_id: str, name: str, timeout_s: float = 30.0) -> None:
        self.kit = kit
        self.job_id = job_id
        self.name = name
        self._timeout_s = timeout_s
        self._downloaded: tempfile.TemporaryDirectory[str] | None = None

    def info(self) -> JobInfo:
        """What `flctl job show` shows: status, rounds, each site's state, the last metrics."""
        from flctl.recipe.envs import admin_client, node_errors

        with admin_client(self.kit, self._timeout_s) as admin, node_errors():
            return admin.get_job(self.job_id)

    def status(self) -> str:
        return str(self.info().status)

    def wait(self, timeout_s: float | None = None) -> str:
        """Follow the job's events (no polling, as `flctl job submit --watch`) until it ends."""
        from flctl.recipe.envs import admin_client, node_errors

        failure: list[BaseException] = []
        with admin_client(self.kit, self._timeout_s) as admin:
            def follow() -> None:
                try:
                    with node_errors():
                        for _ in admin.watch(self.job_id):
                            pass
                except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                    failure.append(exc)

            watcher = threading.Thread(target=follow, name=f"flctl-recipe-wait-{self.job_id}", daemon=True)
            watcher.start()
            watcher.join(timeout_s)
            if watcher.is_alive():
                admin.close()  # ends the stream: the thread finishes
                watcher.join(5)
                error = RecipeError(f"job {self.name} ({self.job_id}) did not end within {timeout_s:g} s")
                error.exit_code = 5
                raise error
        if failure:
            raise failure[0]
        return self.status()

    def artifacts(self) -> Path:
        """The job's artifacts, downloaded once it has ended (`flctl job download`) and kept while this run lives."""
        from flctl.node.jobs.job_status import ENDED
        from flctl.recipe.envs import admin_client, node_errors

        if self._downloaded is None:
            with admin_client(self.kit, self._timeout_s) as admin, node_errors():
                if admin.get_job(self.job_id).status not in ENDED:
                    raise RecipeError(f"job {self.name} ({self.job_id}) has not ended; call wait() first")
                self._downloaded = tempfile.TemporaryDirectory(prefix="flctl-recipe-run-")
                admin.download_job(self.job_id, Path(self._downloaded.name))
        return Path(self._downloaded.name) / self.job_id

    def __repr__(self) -> str:
        return f"FederationRun({self.name!r}, {self.job_id!r}, kit={str(self.kit)!r})"
