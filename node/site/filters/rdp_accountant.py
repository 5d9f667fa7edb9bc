"""The privacy a site has spent: Opacus's RDP accountant (`opacus.accountants.RDPAccountant`), with its analysis.

Each release of a clipped, noised update is one step of the sampled Gaussian mechanism (noise multiplier, sample
rate); the steps' Rényi DP adds up, and `epsilon(delta)` converts it to (epsilon, delta)-DP at Opacus's orders, as
`RDPAccountant.get_epsilon` does, with Opacus's own functions (`opacus.accountants.analysis.rdp`: `compute_rdp`,
`get_privacy_spent`). That module needs only numpy and scipy; Opacus's package (and its RDPAccountant module)
imports torch first, seconds a site's job process would pay, so the module is loaded from its file alone.

A ledger file keeps the accountants of a job's sites across restarts of the job's process (`save_ledger`,
`load_ledger`): JSON, `{"api_version": 1, "sites": {site: [[noise_multiplier, sample_rate, steps], ...]}}`.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType

DEFAULT_ALPHAS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 64)])
"""The RDP orders searched, `RDPAccountant.DEFAULT_ALPHAS`."""


def opacus_available() -> bool:
    """Whether Opacus is installed (the `privacy` extra), without importing it."""
    return importlib.util.find_spec("opacus") is not None


@cache
def _analysis() -> ModuleType:
    """`opacus.accountants.analysis.rdp`, loaded from its file without Opacus's package (which imports torch)."""
    spec = importlib.util.find_spec("opacus")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("gaussian_dp needs Opacus; install the privacy extra (pip install 'flctl[privacy]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "accountants" / "analysis" / "rdp.py"
    loaded = importlib.util.spec_from_file_location("flctl_opacus_rdp_analysis", path)
    if loaded is None or loaded.loader is None:
        raise RuntimeError(f"cannot load Opacus's RDP analysis from {path}")
    module = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(module)
    return module


@dataclass
class RdpAccountant:
    """The releases of one site in one job, as (noise multiplier, sample rate, steps), merged as Opacus merges them."""

    history: list[tuple[float, float, int]] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """How many releases were accounted."""
        return sum(steps for _, _, steps in self.history)

    def step(self, noise_multiplier: float, sample_rate: float) -> None:
        """Account one more release."""
        if self.history and self.history[-1][:2] == (noise_multiplier, sample_rate):
            self.history[-1] = (noise_multiplier, sample_rate, self.history[-1][2] + 1)
        else:
            self.history.append((noise_multiplier, sample_rate, 1))

    def epsilon(self, delta: float) -> float:
        """The epsilon spent so far at `delta` (0 before any release)."""
        if not self.history:
            return 0.0
        analysis = _analysis()
        rdp = sum(analysis.compute_rdp(q=rate, noise_multiplier=sigma, steps=steps, orders=list(DEFAULT_ALPHAS))
                  for sigma, rate, steps in self.history)
        eps, _alpha = analysis.get_privacy_spent(orders=list(DEFAULT_ALPHAS), rdp=rdp, delta=delta)
        return float(eps)

    def epsilon_after(self, noise_multiplier: float, sample_rate: float, delta: float) -> float:
        """The epsilon at `delta` one more release would bring the total to (nothing is accounted)."""
        trial = RdpAccountant(list(self.history))
        trial.step(noise_multiplier, sample_rate)
        return trial.epsilon(delta)


def save_ledger(path: Path, accountants: dict[str, RdpAccountant]) -> None:
    """Write every site's releases to `path`, whole or not at all (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"api_version": 1, "sites": {site: [list(entry) for entry in accountant.history]
                                                   for site, accountant in sorted(accountants.items())}})
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text + "\n")
    os.replace(temporary, path)


def load_ledger(path: Path) -> dict[str, RdpAccountant]:
    """The sites' releases `path` holds; none when there is no such file. ValueError naming the file when it is not
    a ledger (the privacy spent would be unknown)."""
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        sites = raw["sites"] if isinstance(raw, dict) and raw.get("api_version") == 1 else None
        if not isinstance(sites, dict):
            raise ValueError("not a ledger of api_version 1")
        return {str(site): RdpAccountant([(float(sigma), float(rate), int(steps)) for sigma, rate, steps in history])
                for site, history in sites.items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} cannot be read as the privacy spent so far ({exc}); the job cannot go on without "
                         "it: move it aside only if no round of this job has been sent") from None
