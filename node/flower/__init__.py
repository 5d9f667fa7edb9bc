"""Flower apps inside flctl (issue 32): a Flower app (`pyproject.toml` naming a ServerApp and a ClientApp, as
`flwr new` makes it) runs on the flctl federation, as NVIDIA FLARE runs them.

The server's job process (the `flower` workflow, `flctl.node.workflows.flower`) starts Flower's own SuperLink on
127.0.0.1 and runs the app on it with `flwr run` (`superlink_runner`); each site's job script (`supernode_relay`)
starts Flower's own SuperNode pointed at a local endpoint it serves. That endpoint hands the SuperNode's Fleet API
calls (protobuf over HTTP in flwr 1.42: a path and opaque request bytes) to flctl as `flower_fleet` tasks' answers
over the site's mTLS channel; the server replays them on the SuperLink and sends the replies back in the site's
next task (`fleet_calls`). Flower lives in a virtual environment of its own (`flower_python`): flwr 1.42 needs
protobuf<7, flctl's pins 7.
"""
