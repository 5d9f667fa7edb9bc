"""The simulator: a job's workflow in this process, its sites' scripts as threads of K worker processes.

No provisioning, no TLS, no daemons: the same job.yml, the same training script and the same
workflow code as a real run, with the sites simulated on one machine (`flctl simulate`).
"""

from flctl.node.simulator.runtime import Observer, SimulationError, SimulationResult, simulate, site_names

__all__ = ["Observer", "SimulationError", "SimulationResult", "simulate", "site_names"]
