"""Submodules of the Client API (`flctl.client.<name>`): `flctl.client` is `flctl.node.client.api`, a module, and
its `__path__` is this folder, so `import flctl.client.lightning` finds `lightning` here."""
