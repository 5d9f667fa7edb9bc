"""Jobs: job.yml (`job_spec`), the bundle that travels (`bundle`), its signature (`job_signing`)
and the tasks a workflow sends (`tasks`).
"""
