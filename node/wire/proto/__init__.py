"""The wire protocol: `flctl.proto` and its generated code (`flctl_pb2*.py`), checked by a test."""
