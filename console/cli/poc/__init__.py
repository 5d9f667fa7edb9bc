"""`flctl poc …`: a local federation on this machine (server, sites and an admin on 127.0.0.1)."""
