"""The simulator: a job's workflow in this process, its sites' scripts as threads of K worker processes.

No provisioning, no TLS, no daemons: the same job.yml, the same training script and the same
workflow code as a real run, with the sites simulated on one machine (`flctl simulate`). The entry
points are in `runtime` (`simulate`, `site_names`); this package imports nothing, so a worker
process imports only what its sites' scripts need, not the workflows.
"""
