"""What the server tells any participant who asks (`Federation.ServerInfo`): its clock and its versions, so that
`flctl preflight` can measure a machine's clock skew against the server and compare versions."""

from __future__ import annotations

import platform
import time

from flctl.node.wire.proto import flctl_pb2 as pb

DISTRIBUTION = "flctl"


def flctl_version() -> str:
    """This flctl's version: the installed distribution's, else the package's own `__version__`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        import flctl

        return str(flctl.__version__)


def server_info(project: str) -> pb.ServerInfoReply:
    """The reply, its clock read last so that it is as close as can be to the moment the reply leaves."""
    return pb.ServerInfoReply(flctl_version=flctl_version(), python_version=platform.python_version(),
                              project=project, time=time.time())
