"""How node processes start, wait and stop: readiness pipes, PID files, reconnect backoff and the spare job process."""
