"""The folder put on a script's path for job.yml `app: {compat: nvflare}`: it holds the package `nvflare` only."""
