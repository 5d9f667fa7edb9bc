"""Homomorphic encryption of models with CKKS (TenSEAL): encrypt a weighted model, add ciphertexts, decrypt a sum.

A model's flat vector is cut into pieces of one ciphertext's slots (poly_modulus_degree / 2); each piece is one
CKKS vector, serialized. A payload (`payload.pack`) is `@he/ciphertexts` (uint8: the pieces back to back) and
`@he/sizes` (int64: each piece's bytes), with a header naming the mode, the context (the digest of its public
serialization: the server's `server_context.tenseal` and every site's copy made from `client_context.tenseal`
give the same one), the model's layout, the summed weight and how many sites the sum holds.

Adding needs only the public context; decrypting needs the secret key, which only sites have.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from flctl.node.jobs.tasks import Params
from flctl.node.secagg.layout import ModelLayout
from flctl.node.secagg.payload import SecAggError, field, header_of, pack

MODE = "he"
CIPHERTEXTS = "@he/ciphertexts"
SIZES = "@he/sizes"


class CkksKeys:
    """A CKKS context read from a kit file: public (the server's: it adds) or secret (a site's: it also decrypts)."""

    def __init__(self, data: bytes, source: str) -> None:
        try:
            import tenseal as ts
        except ImportError:
            raise SecAggError("encryption: he needs TenSEAL: install the privacy extra (pip install "
                              "'flctl[privacy]', or bash scripts/setup.sh --all)") from None
        self._ts = ts
        self.source = source
        try:
            self.context = ts.context_from(data)
        except Exception as exc:  # noqa: BLE001 - TenSEAL raises bare exceptions for damaged bytes
            raise SecAggError(f"{source} is not a TenSEAL context: {exc}") from None
        if self.context.is_private():
            public = self.context.copy()
            public.make_context_public()
            shown = bytes(public.serialize(save_galois_keys=False, save_relin_keys=False))
        else:
            shown = bytes(self.context.serialize(save_galois_keys=False, save_relin_keys=False))
        self.context_id = hashlib.sha256(shown).hexdigest()[:16]
        parms = self.context.seal_context().data.first_context_data().parms()
        self.slots = int(parms.poly_modulus_degree()) // 2

    @property
    def can_decrypt(self) -> bool:
        return bool(self.context.is_private())

    def encrypt(self, params: Mapping[str, np.ndarray], weight: float) -> Params:
        """`params` times `weight`, encrypted, as a payload."""
        layout = ModelLayout.of(params)
        vector = layout.flatten(params) * float(weight)
        pieces = [bytes(self._ts.ckks_vector(self.context, vector[at:at + self.slots]).serialize())
                  for at in range(0, max(vector.size, 1), self.slots)] if vector.size else []
        return self._payload(pieces, layout, float(weight), 1)

    def _payload(self, pieces: list[bytes], layout: ModelLayout, weight: float, count: int) -> Params:
        header = {"mode": MODE, "context": self.context_id, "layout": layout.as_json(), "weight": weight,
                  "count": count}
        sizes = np.array([len(p) for p in pieces], np.int64)
        data = np.frombuffer(b"".join(pieces), np.uint8).copy() if pieces else np.zeros(0, np.uint8)
        return pack(header, {CIPHERTEXTS: data, SIZES: sizes})

    def read(self, params: Mapping[str, np.ndarray], whose: str) -> tuple[dict[str, Any], ModelLayout, list[Any]]:
        """A payload's header, layout and CKKS vectors; SecAggError naming `whose` payload and the field when it is
        of another mode or context, or damaged."""
        header = header_of(params, whose)
        if header.get("mode") != MODE:
            raise SecAggError(f"{whose} payload is of mode {header.get('mode')!r}, not {MODE!r}")
        context = field(header, "context", str, whose)
        if context != self.context_id:
            raise SecAggError(f"{whose} ciphertexts are of another HE context (field 'context' {context}, but "
                              f"{self.source} is {self.context_id}): its kit comes from another provisioning; give "
                              "every participant kits of the same project")
        layout = ModelLayout.from_json(header.get("layout"))
        if CIPHERTEXTS not in params or SIZES not in params:
            raise SecAggError(f"{whose} payload lacks {CIPHERTEXTS} or {SIZES}")
        data = np.asarray(params[CIPHERTEXTS], np.uint8).reshape(-1)
        sizes = np.asarray(params[SIZES]).reshape(-1)
        expected = -(-layout.size // self.slots)
        if sizes.size != expected or int(sizes.sum()) != data.size or (sizes.size and int(sizes.min()) <= 0):
            raise SecAggError(f"{whose} {SIZES} ({sizes.size} pieces, {int(sizes.sum())} bytes) does not fit "
                              f"{CIPHERTEXTS} ({data.size} bytes) and a model of {layout.size} values")
        vectors = []
        at = 0
        for size in sizes.tolist():
            try:
                vectors.append(self._ts.ckks_vector_from(self.context, data[at:at + size].tobytes()))
            except Exception as exc:  # noqa: BLE001 - TenSEAL raises bare exceptions for damaged bytes
                raise SecAggError(f"{whose} {CIPHERTEXTS} holds a piece that is not a ciphertext of "
                                  f"{self.source}: {exc}") from None
            at += size
        return header, layout, vectors

    def decrypt_sum(self, params: Mapping[str, np.ndarray], whose: str) -> tuple[Params, int]:
        """The sum a payload holds, not divided (float64), and how many sites' values it adds up (its header's
        `count`, as the server says)."""
        if not self.can_decrypt:
            raise SecAggError(f"{self.source} holds no secret key: it cannot decrypt")
        header, layout, vectors = self.read(params, whose)
        count = field(header, "count", int, whose)
        flat = np.concatenate([np.asarray(v.decrypt(), np.float64) for v in vectors]) if vectors \
            else np.zeros(0, np.float64)
        floats = ModelLayout(tuple((name, "<f8", shape) for name, _, shape in layout.entries))
        return floats.unflatten(flat), count

    def decrypt(self, params: Mapping[str, np.ndarray], whose: str) -> Params:
        """The model a payload holds: its decrypted sum divided by its summed weight."""
        if not self.can_decrypt:
            raise SecAggError(f"{self.source} holds no secret key: it cannot decrypt")
        header, layout, vectors = self.read(params, whose)
        weight = field(header, "weight", float, whose) if not isinstance(header.get("weight"), int) \
            else float(header["weight"])
        if not weight > 0:
            raise SecAggError(f"{whose} {MODE} payload has weight {weight}; nothing to divide the sum by")
        flat = np.concatenate([np.asarray(v.decrypt(), np.float64) for v in vectors]) if vectors \
            else np.zeros(0, np.float64)
        return layout.unflatten(flat / weight)


class CiphertextSum:
    """The server's running sum of sites' encrypted models (adding only: it never holds a secret key)."""

    def __init__(self, keys: CkksKeys) -> None:
        self._keys = keys
        self._layout: ModelLayout | None = None
        self._vectors: list[Any] = []
        self.weight = 0.0
        self.count = 0

    def add(self, params: Mapping[str, np.ndarray], weight: int, site: str) -> None:
        """Add `site`'s payload, whose header must state `weight`; SecAggError, changing nothing, when it does not
        fit (another context, layout or weight, or damaged bytes)."""
        header, layout, vectors = self._keys.read(params, f"{site}'s")
        if self._layout is not None and layout != self._layout:
            raise SecAggError(f"{site}'s model layout (tensors {layout.names()}) differs from the other sites'")
        stated = header.get("weight")
        if not isinstance(stated, int | float) or float(stated) != float(weight) or header.get("count") != 1:
            raise SecAggError(f"{site}'s payload states weight {stated!r} (count {header.get('count')!r}), but it "
                              f"answered num_examples {weight}")
        if self._layout is None:
            self._layout, self._vectors = layout, vectors
        else:
            self._vectors = [a + b for a, b in zip(self._vectors, vectors, strict=True)]
        self.weight += float(weight)
        self.count += 1

    def result(self) -> Params:
        """The encrypted sum as a payload (for the next task and the round's checkpoint)."""
        if self._layout is None:
            raise ValueError("no models were added")
        pieces = [bytes(v.serialize()) for v in self._vectors]
        return self._keys._payload(pieces, self._layout, self.weight, self.count)
