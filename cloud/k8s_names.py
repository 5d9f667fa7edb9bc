"""Participant names as Kubernetes and Compose names, by one documented mapping that never collides silently.

flctl names allow capitals, `_` and `.` (`Site_1`, `hospital.a`); a Kubernetes object name is an RFC 1123
label (lower-case letters, digits, `-`; a letter or digit at each end). The mapping: lower-case; every `_` and `.`
becomes `-`; a name that does not then start with a letter gets `p-` in front (Service names must); at most
MAX_LENGTH characters, so `NAME-workspace` and `NAME-kit` still fit in 63. `Site_1` is `site-1`. Two participants
that map to one name (`Site_1` and `site-1`) are refused, naming both: rename one in project.yml.
"""

from __future__ import annotations

import re

from flctl.cloud.deploy_errors import DeployInputError

MAX_LENGTH = 50
_LABEL = re.compile(r"[a-z]([a-z0-9-]*[a-z0-9])?")


def container_name(participant: str) -> str:
    """The Kubernetes / Compose name of `participant` (see the module's mapping)."""
    name = re.sub(r"[_.]", "-", participant.lower())
    if not name[:1].isalpha():
        name = f"p-{name}"
    if not _LABEL.fullmatch(name) or len(name) > MAX_LENGTH:
        raise DeployInputError(f"[participants.{participant}] maps to '{name}', which is not a Kubernetes name "
                               f"of at most {MAX_LENGTH} characters (lower-case letters, digits and '-', ending "
                               "in a letter or digit); rename it in project.yml")
    return name


def container_names(participants: list[str]) -> dict[str, str]:
    """participant -> its name, refusing two participants that map to the same name."""
    names: dict[str, str] = {}
    taken: dict[str, str] = {}
    for participant in participants:
        name = container_name(participant)
        if name in taken:
            raise DeployInputError(f"[participants.{participant}] maps to '{name}', as '{taken[name]}' does; "
                                   "rename one of them in project.yml")
        names[participant], taken[name] = name, participant
    return names


def is_label(name: str) -> bool:
    """True for a valid Service name (an RFC 1035 label of at most 63 characters)."""
    return len(name) <= 63 and _LABEL.fullmatch(name) is not None
