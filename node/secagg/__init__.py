"""Secure aggregation: the server sums what it cannot read. Two modes, one seam.

- `he` (job.yml `workflow.args.encryption: he`): each site encrypts its weighted model with the project's CKKS
  context (TenSEAL, made by provisioning: the secret key is in the sites' kits only); the server adds ciphertexts
  with the public context and sends the encrypted sum back; sites decrypt it before their script sees it.
- `masking` (`workflow.args.secure_aggregation: masking`): sites add pairwise masks that cancel in the sum to
  quantized updates (SecAgg+), so the server learns the sum and nothing else.

The site side (`site_codec`) runs in the site's job process, between the script and the network, after the site's
privacy filters: a script cannot send in clear. The server side (`flctl.node.workflows.secure_sum`) sums the opaque
payloads. `layout` flattens a model to one vector and back; `he` and `masking` hold each mode's maths.
"""

from __future__ import annotations

HEADER = "@secagg/header"
"""The tensor (JSON bytes) that marks params as secure-aggregation payload and says how to read them."""
