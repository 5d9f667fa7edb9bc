"""Secure aggregation by masking (Bonawitz et al. 2017, with dropouts as in SecAgg+), as pure protocol steps.

A round, for the sites U1 that advertised keys and sent shares:
1. keys: each site makes X25519 pairs `c` and `s` and signs their public keys with its certificate (`advertise`);
2. shares: each site checks every peer's signature, draws a self-mask seed b, splits b and its `s` private key
   t-of-n (Shamir) and seals one share of each for every peer (`share`);
3. upload: each site sends y = q + PRG(b) + sum over peers j of ±PRG(s_ij) mod 2^64 (`masked`), where q is its
   update times its weight, quantized (`quantize`), and s_ij the seed it agrees with j (+ when its name sorts
   first): the pairwise masks cancel in the sum, and the self mask hides y even from a server that claims the site
   dropped;
4. unmask: each survivor reveals, for every survivor, its share of b, and for every site that dropped before its
   upload, its share of `s` (`reveal`), never both for one site; with t of them the server removes the masks
   (`Aggregate.total`) and learns the sum, nothing else.

Quantization: q = round(weight * value * 2^SCALE_BITS) in Z_2^64 (two's complement), so the sum is exact up to each
site's rounding: the average is within 2^-(SCALE_BITS + 1) of the float64 weighted mean (before the cast to the
model's dtype), while |sum of weight * value| < 2^(63 - SCALE_BITS) (about 5.5e11).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flctl.node.secagg import shamir
from flctl.node.secagg.mask_crypto import (
    ShareLabel,
    agree,
    b64,
    check_signed,
    mask,
    raw_private,
    raw_public,
    seal,
    sign,
    statement,
    unb64,
    unseal,
)
from flctl.node.secagg.payload import SecAggError

SCALE_BITS = 24
LIMIT = 2.0 ** (63 - SCALE_BITS)
"""The largest |weight * value| sum that fits the ring."""


def quantize(vector: np.ndarray, weight: float) -> np.ndarray:
    """`vector` times `weight`, as fixed-point integers in Z_2^64 (uint64); ValueError when it does not fit."""
    scaled = np.asarray(vector, np.float64) * float(weight)
    if scaled.size and not np.isfinite(scaled).all():
        raise ValueError("the update holds NaN or infinite values")
    if scaled.size and float(np.abs(scaled).max()) >= LIMIT:
        raise ValueError(f"a value times the weight reaches {float(np.abs(scaled).max()):.3g}, beyond what masking "
                         f"sums exactly ({LIMIT:.3g})")
    return np.rint(scaled * 2.0 ** SCALE_BITS).astype(np.int64).view(np.uint64)


def dequantize(total: np.ndarray, weight: float) -> np.ndarray:
    """The mean of a sum of quantized vectors whose weights add up to `weight`."""
    return total.view(np.int64).astype(np.float64) / 2.0 ** SCALE_BITS / float(weight)


def _pair_seed(private: bytes, public: bytes, job_id: str, round_no: int, a: str, b: str) -> bytes:
    first, second = sorted((a, b))
    return agree(private, public, "\0".join(("flctl secagg mask", job_id, str(round_no), first, second)).encode())


def _share_key(private: bytes, public: bytes) -> bytes:
    return agree(private, public, b"flctl secagg share key")


@dataclass(frozen=True)
class Advert:
    """A site's signed public keys for one round."""

    site: str
    c_pk: bytes
    s_pk: bytes
    signature: bytes
    cert_pem: bytes

    def as_json(self) -> dict[str, str]:
        return {"c_pk": b64(self.c_pk), "s_pk": b64(self.s_pk), "signature": b64(self.signature),
                "cert": self.cert_pem.decode()}

    @classmethod
    def from_json(cls, site: str, raw: Any) -> Advert:
        if not isinstance(raw, dict) or not isinstance(raw.get("cert"), str):
            raise SecAggError(f"{site}'s advertised keys are not an object with c_pk, s_pk, signature and cert")
        return cls(site, unb64(raw.get("c_pk"), f"{site}'s c_pk"), unb64(raw.get("s_pk"), f"{site}'s s_pk"),
                   unb64(raw.get("signature"), f"{site}'s signature"), raw["cert"].encode())


@dataclass
class MaskingSite:
    """One site's part in one round (it keeps its private keys, its self-mask seed and the shares it holds)."""

    job_id: str
    round: int
    site: str
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes
    _c: bytes = b""
    _s: bytes = b""
    _b: bytes = b""
    peers: dict[str, Advert] = field(default_factory=dict)
    threshold: int = 0
    _held: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # sender -> (its s share, its b share)
    _revealed: bool = False
    participants: list[str] = field(default_factory=list)

    def advertise(self) -> Advert:
        """Step 1: fresh key pairs, their public keys signed with the site's certificate key."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        c, s = X25519PrivateKey.generate(), X25519PrivateKey.generate()
        self._c, self._s = raw_private(c), raw_private(s)
        c_pk, s_pk = raw_public(c), raw_public(s)
        signature = sign(self.key_pem, statement(self.job_id, self.round, self.site, c_pk, s_pk))
        return Advert(self.site, c_pk, s_pk, signature, self.cert_pem)

    def share(self, adverts: Mapping[str, Advert], threshold: int) -> dict[str, bytes]:
        """Step 2: check every advert (SecAggError naming the site whose keys are not its own); then the sealed
        shares of this site's `s` key and self-mask seed, one per participant (this site's own kept)."""
        if self.site not in adverts or not self._s:
            raise SecAggError(f"{self.site} is not among the sites whose keys the server relayed for round "
                              f"{self.round}")
        if not 2 <= threshold <= len(adverts) or 2 * threshold <= len(adverts):
            raise SecAggError(f"a threshold of {threshold} for {len(adverts)} sites is not more than half of them")
        mine = adverts[self.site]
        if mine.s_pk != raw_public_of(self._s) or mine.c_pk != raw_public_of(self._c):
            raise SecAggError(f"the keys relayed as {self.site}'s are not the ones it advertised")
        for name, advert in adverts.items():
            check_signed(advert.cert_pem, self.ca_pem, name, statement(self.job_id, self.round, name, advert.c_pk,
                                                                       advert.s_pk), advert.signature)
        self.peers, self.threshold = dict(adverts), threshold
        self._b = os.urandom(32)
        order = sorted(adverts)
        s_shares = shamir.split(self._s, len(order), threshold)
        b_shares = shamir.split(self._b, len(order), threshold)
        out = {}
        for x, name in enumerate(order, start=1):
            if name == self.site:
                self._held[name] = (s_shares[x], b_shares[x])
                continue
            key = _share_key(self._c, adverts[name].c_pk)
            out[name] = seal(key, ShareLabel(self.job_id, self.round, self.site, name), s_shares[x] + b_shares[x])
        return out

    def receive(self, sealed: Mapping[str, bytes]) -> list[str]:
        """Step 3's task brings the shares the other sites sealed for this one; each that does not open (another
        round, another receiver, changed) is left out. The senders left out."""
        bad = []
        for sender, data in sealed.items():
            advert = self.peers.get(sender)
            if advert is None or sender == self.site:
                bad.append(sender)
                continue
            try:
                opened = unseal(_share_key(self._c, advert.c_pk), ShareLabel(self.job_id, self.round, sender,
                                                                              self.site), data)
            except SecAggError:
                bad.append(sender)
                continue
            if len(opened) != 2 * shamir.SHARE_BYTES:
                bad.append(sender)
                continue
            self._held[sender] = (opened[:shamir.SHARE_BYTES], opened[shamir.SHARE_BYTES:])
        return bad

    def masked(self, quantized: np.ndarray, participants: Sequence[str] | None = None) -> np.ndarray:
        """Step 3: the quantized update plus the self mask and the pairwise masks (mod 2^64) with `participants`
        (default: every site whose keys were relayed; the server leaves out those whose shares it refused)."""
        if not self._b:
            raise SecAggError(f"{self.site} has no masking keys for round {self.round + 1}: the key steps did not run")
        chosen = set(self.peers if participants is None else participants)
        if not chosen <= set(self.peers) or self.site not in chosen or len(chosen) < self.threshold:
            raise SecAggError(f"the round's participants {sorted(chosen)} do not fit the sites whose keys were "
                              f"relayed, or are fewer than the threshold {self.threshold}")
        self.participants = sorted(chosen)
        out = quantized.astype(np.uint64, copy=True)
        out += mask(self._b, out.size)
        for name, advert in self.peers.items():
            if name == self.site or name not in chosen:
                continue
            pair = mask(_pair_seed(self._s, advert.s_pk, self.job_id, self.round, self.site, name), out.size)
            if self.site < name:
                out += pair
            else:
                out -= pair
        return out

    def reveal(self, survivors: Sequence[str], dropped: Sequence[str]) -> dict[str, dict[str, str]]:
        """Step 4: this site's shares of the survivors' self-mask seeds and of the dropped sites' `s` keys; once a
        round, and only when the survivors are at least the threshold, include this site and no site is both."""
        if self._revealed:
            raise SecAggError(f"the server asked {self.site} to unmask round {self.round + 1} twice; it answers once")
        alive, gone = set(survivors), set(dropped)
        if alive & gone or alive | gone != set(self.participants or self.peers) or self.site not in alive:
            raise SecAggError(f"the server's survivors and dropped sites for round {self.round + 1} do not fit the "
                              "round's sites")
        if len(alive) < self.threshold:
            raise SecAggError(f"only {len(alive)} sites survived round {self.round + 1}, fewer than the threshold "
                              f"{self.threshold}: nothing is revealed")
        self._revealed = True
        return {"b": {j: b64(self._held[j][1]) for j in sorted(alive) if j in self._held},
                "s": {j: b64(self._held[j][0]) for j in sorted(gone) if j in self._held}}


def raw_public_of(private: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return raw_public(X25519PrivateKey.from_private_bytes(private))


@dataclass
class Aggregate:
    """The server's side of one round: the sum of masked uploads, and the masks taken out once t sites reveal."""

    job_id: str
    round: int
    adverts: dict[str, Advert]
    threshold: int
    participants: list[str] = field(default_factory=list)
    """The sites that mask with each other (default: every site whose keys were relayed)."""
    size: int = -1
    weight: float = 0.0
    uploaded: list[str] = field(default_factory=list)
    _sum: np.ndarray | None = None

    def add(self, site: str, masked: np.ndarray, weight: float) -> None:
        """Add `site`'s masked upload; ValueError, changing nothing, when it is not of this round's sites or size."""
        if site not in (self.participants or self.adverts) or site in self.uploaded:
            raise ValueError(f"{site} is not a site of round {self.round + 1}'s masking, or uploaded twice")
        values = np.asarray(masked)
        if values.dtype != np.uint64 or values.ndim != 1 or (self.size >= 0 and values.size != self.size):
            raise ValueError(f"its masked update is {values.dtype} of shape {values.shape}, not uint64 of "
                             f"{self.size if self.size >= 0 else 'the round'}'s size")
        if self._sum is None:
            self._sum, self.size = values.copy(), values.size
        else:
            self._sum += values
        self.uploaded.append(site)
        self.weight += float(weight)

    def dropped(self) -> list[str]:
        return sorted(set(self.participants or self.adverts) - set(self.uploaded))

    def needs(self) -> dict[str, str]:
        """The secrets unmasking needs: owner -> "b" (its self mask: it uploaded) or "s" (its key: it dropped)."""
        return {**{j: "b" for j in self.uploaded}, **{j: "s" for j in self.dropped()}}

    def enough(self, reveals: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether `reveals` hold the threshold's number of shares of every secret unmasking needs."""
        return all(sum(1 for r in reveals.values() if owner in (r.get(kind) or {})) >= self.threshold
                   for owner, kind in self.needs().items())

    def total(self, reveals: Mapping[str, Mapping[str, Any]]) -> np.ndarray:
        """The sum of the survivors' quantized updates, from the sites' `reveals` (site -> {"b": {j: share},
        "s": {j: share}}); SecAggError saying why when fewer than the threshold revealed or a secret does not
        come back whole."""
        if self._sum is None:
            raise SecAggError(f"round {self.round + 1}: no site uploaded a masked update")
        if len(reveals) < self.threshold:
            raise SecAggError(f"round {self.round + 1}: {len(reveals)} sites revealed their shares, fewer than the "
                              f"threshold {self.threshold}; no model is made from a sum whose masks cannot be removed")
        order = sorted(self.adverts)
        x_of = {name: x for x, name in enumerate(order, start=1)}
        total = self._sum.copy()
        for j in sorted(self.uploaded):
            b = self._secret(j, "b", reveals, x_of)
            total -= mask(b, self.size)
        for j in self.dropped():
            s = self._secret(j, "s", reveals, x_of)
            if raw_public_of(s) != self.adverts[j].s_pk:
                raise SecAggError(f"round {self.round + 1}: the shares of {j}'s key do not give back the key it "
                                  "advertised (a site revealed a wrong share)")
            for k in self.uploaded:
                pair = mask(_pair_seed(s, self.adverts[k].s_pk, self.job_id, self.round, j, k), self.size)
                if k < j:
                    total -= pair
                else:
                    total += pair
        return total

    def _secret(self, owner: str, kind: str, reveals: Mapping[str, Mapping[str, Any]],
                x_of: Mapping[str, int]) -> bytes:
        shares: dict[int, bytes] = {}
        for site, revealed in reveals.items():
            share = (revealed.get(kind) or {}).get(owner) if isinstance(revealed, Mapping) else None
            if share is not None and site in x_of:
                shares[x_of[site]] = unb64(share, f"{site}'s share of {owner}")
            if len(shares) == self.threshold:
                break
        if len(shares) < self.threshold:
            raise SecAggError(f"round {self.round + 1}: {len(shares)} shares of {owner}'s "
                              f"{'self mask' if kind == 'b' else 'key'} came back, fewer than the threshold "
                              f"{self.threshold}")
        try:
            return shamir.combine(shares)
        except ValueError as exc:
            raise SecAggError(f"round {self.round + 1}: the shares of {owner}'s secret do not combine: {exc}") from None


def default_threshold(sites: int) -> int:
    """A majority: the fewest survivors for which no server can learn both secrets of a site."""
    return sites // 2 + 1


def encode_reveal(reveal: Mapping[str, Any]) -> str:
    return json.dumps(reveal, sort_keys=True)
