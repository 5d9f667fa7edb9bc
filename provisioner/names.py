"""What a project, participant, organisation or host may be called.

Names become folder names, certificate subjects and TLS host names, so they are
checked strictly and each rule says in its message what is allowed.
"""

from __future__ import annotations

import ipaddress
import re

_SIMPLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

SIMPLE_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def _reserved(name: str) -> None:
    if name.lower().endswith(".zip"):
        raise ValueError(f"'{name}' ends in '.zip', which is kept for kit archives")


def check_project_name(name: str) -> str:
    if not _PROJECT.fullmatch(name):
        raise ValueError(f"'{name}' is not a valid project name; use 1-64 letters, digits, '_' or '-'")
    return name


def check_simple_name(name: str) -> str:
    """Site and organisation names."""
    if not _SIMPLE.fullmatch(name):
        raise ValueError(f"'{name}' is not a valid name; use {SIMPLE_RULE}")
    _reserved(name)
    return name


def check_admin_name(name: str) -> str:
    """Admins are named by e-mail address (as in NVIDIA FLARE) or by a simple name."""
    if not (_EMAIL.fullmatch(name) or _SIMPLE.fullmatch(name)):
        raise ValueError(f"'{name}' is not a valid admin name; use an e-mail address or {SIMPLE_RULE}")
    _reserved(name)
    return name


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_host(host: str) -> str:
    """A DNS name (labels of letters, digits and '-') or an IPv4/IPv6 address."""
    if is_ip(host):
        return host
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"'{host}' is not a valid host; use a DNS name (labels of letters, digits and '-') or an IP address"
        )
    return host


def check_server_name(name: str) -> str:
    check_host(name)
    _reserved(name)
    return name
