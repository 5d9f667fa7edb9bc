"""The federation: wire protocol, server, site agent, jobs, workflows, Client API and admin client.

Imports `provisioner` (to read and verify kits) and nothing else of flctl.
"""
