"""The words of a federation's identities: a participant's kind, an admin's role, a key type.

Plain literals, no pydantic: the kit readers that every CLI command imports use them, and building
project.yml's schema (`project.py`) costs a tenth of a second a command that reads a kit does not need.
"""

from __future__ import annotations

from typing import Literal

ROLES = ("project_admin", "org_admin", "lead", "member")
KINDS = ("server", "site", "admin", "relay")
KEY_TYPES = ("ec-p256", "rsa-2048", "rsa-3072")

Role = Literal["project_admin", "org_admin", "lead", "member"]
Kind = Literal["server", "site", "admin", "relay"]
KeyType = Literal["ec-p256", "rsa-2048", "rsa-3072"]
