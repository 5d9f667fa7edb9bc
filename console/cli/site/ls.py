"""`flctl site ls`."""

from __future__ import annotations

import time

from flctl.console.cli import terminal
from flctl.console.cli.admin_kit import ContextOption, KitOption, connect
from flctl.console.cli.options import JsonOption


def command(kit: KitOption = None, _context: ContextOption = None, json_out: JsonOption = False) -> None:
    """List sites: org, online or offline, last heartbeat, running jobs, how each confines job code (isolation:
    landlock vN, user NAME, none, off), and warns of certificates expiring soon."""
    with connect(kit) as admin:
        sites = admin.list_sites()
    now = time.time()
    if json_out:
        terminal.print_json([{"name": s.name, "org": s.org, "online": s.online, "last_heartbeat": s.last_heartbeat,
                              "running_jobs": s.running_jobs, "cert_expires": s.not_after,
                              "isolation": s.isolation or None} for s in sites])
        return
    terminal.table(["site", "org", "state", "last heartbeat", "running jobs", "isolation"],
                   [(s.name, s.org, "online" if s.online else "offline", f"{now - s.last_heartbeat:.0f}s ago",
                     ", ".join(s.running_jobs) or "-", s.isolation or "-") for s in sites])
    for s in sites:
        if s.not_after and s.not_after - now < 30 * 86400:
            terminal.warning(f"the certificate of site '{s.name}' expires in {(s.not_after - now) / 86400:.0f} days")
