"""Where an external trainer finds its site's job process: the attach file a job with `app: {external: true}`
makes at each site, and reading it back (`flctl.client.attach`).

A site's job process for such a job writes, in `<site workspace>/jobs/<job id>/agent/` (mode 0700, the site's
user only), before the job's first task:

    token         the connection's key, in hex                                     (0600)
    attach.json   {"address": socket path, "token_file", "site", "job_id", "job_name", "framework", "protocol"}
                  (0600)
    api.sock      the unix socket the trainer connects to (elsewhere when that path is too long for one: the
                  address in attach.json says where)

and removes them once a trainer has attached (one trainer per job and site), or when the job ends at the site.
A trainer finds them by the job's folder, or by the site's workspace (`KIT/workspace` unless the site says
otherwise) and, where several jobs wait for a trainer, the job's id or name. Only a process that can read the
token (the site's user, or root) can attach; the protocol on the socket is `flctl.node.client.api_wire`, as for a
script flctl starts. Only the standard library here.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

AGENT_DIR = "agent"
"""The folder in a site's job folder that holds the attach file, the token and (usually) the socket."""
ATTACH_FILE = "attach.json"
TOKEN_FILE = "token"
SOCKET_FILE = "api.sock"
_MAX_SOCKET_PATH = 100
"""Unix socket paths are short (108 bytes on Linux, 104 on macOS)."""


class AttachError(RuntimeError):
    """The attach file or token cannot be found or read, or says something else than a site writes."""


@dataclass(frozen=True)
class AttachInfo:
    """What a trainer needs to connect to one job at one site."""

    address: str
    token: bytes
    site: str
    job_id: str
    framework: str
    protocol: int
    job_name: str = ""


def socket_fits(path: Path) -> bool:
    """Whether `path` is short enough for a unix socket's address."""
    return len(os.fsencode(path)) <= _MAX_SOCKET_PATH


def write_private(path: Path, text: str) -> None:
    """Write `text` to a new file at `path` readable by this user only (0600 from the start, never wider)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def write_attach(agent_dir: Path, address: str, token: bytes, site: str, job_id: str, job_name: str,
                 framework: str, protocol: int) -> Path:
    """Write the token, then the attach file that names it (a trainer that sees the attach file finds the token);
    the attach file's path."""
    token_file = agent_dir / TOKEN_FILE
    write_private(token_file, token.hex() + "\n")
    attach = agent_dir / ATTACH_FILE
    tmp = agent_dir / f".{ATTACH_FILE}.tmp"
    write_private(tmp, json.dumps({"address": address, "token_file": str(token_file), "site": site,
                                   "job_id": job_id, "job_name": job_name, "framework": framework,
                                   "protocol": protocol}, indent=1) + "\n")
    os.replace(tmp, attach)
    return attach


def read_attach(path: str | os.PathLike[str], token_file: str | os.PathLike[str] | None = None,
                wait_s: float = 0.0, job: str | None = None) -> AttachInfo:
    """What `path` says: an attach file, the agent folder holding one (`<job folder>/agent`, or the job folder
    itself), a site's workspace or kit (the one job there waiting for a trainer; `job`, its id or name, picks one
    of several), or the socket itself (then the token is read from `token_file`, default the `token` file beside
    it). Waits up to `wait_s` for it to appear (a trainer started before its job)."""
    place = Path(path)
    deadline = time.monotonic() + wait_s
    while True:
        attach = _attach_file(place, job)
        if attach is not None or place.is_socket() or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if attach is None:
        if not place.is_socket():
            waited = f" within {wait_s:g} s" if wait_s else ""
            raise AttachError(f"{place}: no attach file ({AGENT_DIR}/{ATTACH_FILE}) or socket found{waited}; a site "
                              "writes one in <site workspace>/jobs/<job id>/agent/ while a job with app: "
                              "{external: true} runs there")
        return AttachInfo(str(place), _token(Path(token_file) if token_file else place.parent / TOKEN_FILE),
                          "", "", os.environ.get("FLCTL_FRAMEWORK", "numpy"), 1)
    try:
        data = json.loads(attach.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AttachError(f"{attach}: cannot read the attach file: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in
                                             ("address", "token_file", "site", "job_id", "framework")):
        raise AttachError(f"{attach}: not an attach file a site wrote (it needs address, token_file, site, job_id "
                          "and framework)")
    protocol = data.get("protocol", 1)
    return AttachInfo(data["address"], _token(Path(token_file) if token_file else Path(data["token_file"])),
                      data["site"], data["job_id"], data["framework"], protocol if isinstance(protocol, int) else 1,
                      str(data.get("job_name", "")))


def _attach_file(place: Path, job: str | None) -> Path | None:
    for candidate in (place, place / ATTACH_FILE, place / AGENT_DIR / ATTACH_FILE):
        if candidate.is_file():
            return candidate
    for workspace in (place, place / "workspace"):  # a site's workspace, or its kit (KIT/workspace)
        if (workspace / "jobs").is_dir():
            waiting = [f for f in (workspace / "jobs").glob(f"*/{AGENT_DIR}/{ATTACH_FILE}")
                       if job is None or job in (f.parent.parent.name, _job_name(f))]
            if len(waiting) > 1:
                names = ", ".join(sorted(f"{f.parent.parent.name} ({_job_name(f)})" for f in waiting))
                raise AttachError(f"{workspace}: several jobs wait for a trainer: {names}; say which (job=ID or "
                                  "NAME)")
            return waiting[0] if waiting else None
    return None


def _job_name(attach: Path) -> str:
    try:
        data = json.loads(attach.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("job_name", "")) if isinstance(data, dict) else ""


def _token(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AttachError(f"{path}: cannot read the token ({exc.strerror or exc}); only the site's user can "
                          "attach a trainer") from None
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise AttachError(f"{path}: the token is not hex") from None
