"""`import node.api as fl` still works: it is `flctl.client`, with a warning naming the new import."""

import sys
import warnings

import flctl.client

warnings.warn("'import node.api' is deprecated: use 'import flctl.client as fl' (the same Client API)",
              FutureWarning, stacklevel=2)
sys.modules[__name__] = flctl.client
