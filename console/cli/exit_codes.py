"""Exit codes, the same for every flctl command."""

OK = 0
FAILED = 1  # the operation ran and failed: job failed, verification found a problem, not found
BAD_INPUT = 2  # bad usage or bad input
NO_CONNECTION = 3  # cannot connect or authenticate
NOT_PERMITTED = 4
TIMED_OUT = 5
INTERRUPTED = 130
