"""The provisioner's exception family: every failure a user can cause or meet."""

from __future__ import annotations

from dataclasses import dataclass


class ProvisionError(Exception):
    """Base class: the provisioner could not do what was asked."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class InputError(ProvisionError):
    """An input file (project.yml, a CSR, a kit) is malformed or invalid."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StateError(ProvisionError):
    """The provisioner's state folder (CA, issued certificates) is missing, locked or damaged."""


class PassphraseError(ProvisionError):
    """The CA key is encrypted and no passphrase, or a wrong one, was given."""


class KitError(ProvisionError):
    """A startup kit cannot be read (not a kit, missing config or certificate)."""
