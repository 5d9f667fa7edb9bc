"""`flctl audit`: check and read the tamper-evident audit logs of the server and the sites."""
