"""Shamir's t-of-n secret sharing of 32-byte secrets over the prime field GF(2^521 - 1).

`split` gives each holder (x = 1..n) a point of a random polynomial of degree t - 1 whose value at 0 is the secret;
any t points give it back (`combine`, Lagrange interpolation at 0); fewer say nothing about it. The coefficients come
from `secrets` (the OS's CSPRNG).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

PRIME = 2 ** 521 - 1
SHARE_BYTES = 66
"""A share's y as bytes (521 bits)."""


def split(secret: bytes, holders: int, threshold: int) -> dict[int, bytes]:
    """`secret` (at most 64 bytes) as `holders` shares, x = 1..holders, any `threshold` of which give it back."""
    if not 1 <= threshold <= holders:
        raise ValueError(f"a threshold of {threshold} does not fit {holders} holders")
    if len(secret) > 64:
        raise ValueError("the secret is longer than 64 bytes")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = {}
    for x in range(1, holders + 1):
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares[x] = y.to_bytes(SHARE_BYTES, "big")
    return shares


def combine(shares: Mapping[int, bytes], length: int = 32) -> bytes:
    """The secret of `length` bytes that `shares` (x -> y, at least the threshold of them) hold."""
    if not shares:
        raise ValueError("no shares")
    points = [(x % PRIME, int.from_bytes(y, "big")) for x, y in shares.items()]
    secret = 0
    for i, (xi, yi) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                numerator = numerator * (-xj) % PRIME
                denominator = denominator * (xi - xj) % PRIME
        secret = (secret + yi * numerator * pow(denominator, -1, PRIME)) % PRIME
    if secret >= 1 << (8 * length):
        raise ValueError("the shares do not hold a secret of this length (too few, or not of one secret)")
    return secret.to_bytes(length, "big")
