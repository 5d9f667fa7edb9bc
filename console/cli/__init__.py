"""The `flctl` command line: one module per command, one package per noun, registered in `app`."""
