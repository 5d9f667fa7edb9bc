"""flctl's stand-in for NVIDIA FLARE, as a training script sees it: `nvflare.client` (the Client API),
`nvflare.client.tracking`, `nvflare.client.lightning` and `nvflare.app_common.abstract.fl_model`.

It is on a script's path only for a job whose job.yml asks for it (`app: {compat: nvflare}`); it is not NVIDIA
FLARE, and holds nothing of it but the names a client script uses.
"""

FLCTL_COMPAT = True
"""Set in flctl's module only: a script (or a test) can tell it from a real NVIDIA FLARE."""
