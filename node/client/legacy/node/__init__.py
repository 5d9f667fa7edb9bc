"""`node`, as old job scripts import it: only `node.api` is here (see `flctl.node.client.legacy`)."""
