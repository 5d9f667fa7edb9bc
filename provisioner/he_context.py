"""The project's CKKS context for homomorphic encryption (TenSEAL), made once and kept in the state folder.

    <workspace>/<project>/state/  he_context.tenseal (0600: the secret key)  he_context.json (its parameters)

Provisioning again reuses it, so every kit of every `prod_NN` holds the same keys; changing the parameters in
project.yml makes a new one (a warning says the sites need their new kits). The server's kit gets the public context
only (`startup/server_context.tenseal`: encrypt and add, never decrypt), each site's kit the secret one
(`startup/client_context.tenseal`), as NVIDIA FLARE's HEBuilder names them. No Galois or relinearization keys are
made: aggregation only adds ciphertexts.

TenSEAL (the `privacy` extra) is imported only when a project asks for a context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from flctl.provisioner.errors import ProvisionError
from flctl.provisioner.project import HomomorphicEncryptionSpec
from flctl.provisioner.state import write_atomic

SECRET_FILE = "he_context.tenseal"
PARAMS_FILE = "he_context.json"
SERVER_CONTEXT = "server_context.tenseal"
"""The public context's name in the server's kit `startup/`."""
CLIENT_CONTEXT = "client_context.tenseal"
"""The secret context's name in a site's kit `startup/`."""


@dataclass(frozen=True)
class HeContexts:
    """The serialized public context (for the server) and secret context (for the sites)."""

    public: bytes
    secret: bytes


def make_contexts(spec: HomomorphicEncryptionSpec) -> HeContexts:
    """A new CKKS context of `spec`'s parameters, serialized without Galois and relinearization keys."""
    try:
        import tenseal as ts
    except ImportError:
        raise ProvisionError("project.yml asks for homomorphic_encryption, which needs TenSEAL: install the privacy "
                             "extra (pip install 'flctl[privacy]', or bash scripts/setup.sh --all)") from None
    context = ts.context(ts.SCHEME_TYPE.CKKS, spec.poly_modulus_degree, -1, list(spec.coeff_mod_bit_sizes))
    context.global_scale = float(2 ** spec.scale_bits)
    secret = context.serialize(save_secret_key=True, save_galois_keys=False, save_relin_keys=False)
    return HeContexts(public_of(secret), secret)


def public_of(secret: bytes) -> bytes:
    """The public serialization of a secret context (deterministic: the server's file and a site's copy made from
    its secret context are the same bytes, so their digest names the context)."""
    import tenseal as ts

    context = ts.context_from(secret)
    context.make_context_public()
    return bytes(context.serialize(save_galois_keys=False, save_relin_keys=False))


def project_contexts(state_folder: Path, spec: HomomorphicEncryptionSpec, warnings: list[str]) -> HeContexts:
    """The project's contexts: those kept in `state_folder` when made with `spec`'s parameters, else new ones (kept
    there, the secret one 0600; a note in `warnings` when they replace others)."""
    secret_path, params_path = state_folder / SECRET_FILE, state_folder / PARAMS_FILE
    wanted = spec.model_dump(mode="json")
    if secret_path.is_file() and params_path.is_file():
        try:
            kept = json.loads(params_path.read_text())
            secret = secret_path.read_bytes()
        except (OSError, ValueError) as exc:
            raise ProvisionError(f"cannot read the project's HE context in {state_folder}: {exc}") from None
        if kept == wanted:
            return HeContexts(public_of(secret), secret)
        warnings.append("homomorphic_encryption's parameters changed: a new CKKS context was made, and every site "
                        "and the server need their new kits (ciphertexts of the old context are unreadable)")
    contexts = make_contexts(spec)
    state_folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(secret_path, contexts.secret, 0o600)
    write_atomic(params_path, json.dumps(wanted, sort_keys=True).encode(), 0o600)
    return contexts
