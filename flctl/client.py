"""The Client API for training scripts: `import flctl.client as fl`. It is `flctl.node.client.api` itself.

    import flctl.client as fl

    fl.init()
    while fl.running():
        model = fl.receive()
        ...
        fl.send(fl.Model(params=new_params, metrics={"loss": loss}, num_examples=n))

This module hands over the real module (one module, one session state), so `flctl.client` and
`flctl.node.client.api` are the same object.
"""

import sys

from flctl.node.client import api
from flctl.node.client.api import *  # noqa: F403  (for readers and type checkers: the Client API's names)
from flctl.node.client.api import __all__  # noqa: F401

sys.modules[__name__] = api
