"""flctl: provisioning, deployment, a gRPC federation and a terminal console for federated learning.

One import package. The repository's top-level folders are its parts: `flctl.provisioner`
(project.yml, PKI, kits), `flctl.node` (the federation), `flctl.cloud` (putting kits on
machines), `flctl.console` (the `flctl` CLI and the TUI). A training script imports only the
Client API: `import flctl.client as fl`. Importing this package imports nothing else.
"""

__version__ = "0.1.0"
