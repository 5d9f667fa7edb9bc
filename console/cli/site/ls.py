"""`flctl site ls`."""

from __future__ import annotations

import time

from flctl.console.cli import terminal
from flctl.console.cli.admin_kit import ContextOption, KitOption, connect
from flctl.console.cli.certs.listing import expiring, mark
from flctl.console.cli.options import JsonOption


def command(kit: KitOption = None, _context: ContextOption = None, json_out: JsonOption = False) -> None:
    """List sites: org, online or offline, last heartbeat, running jobs, how each confines job code (isolation:
    landlock vN, user NAME, none, off), its GPUs (how many, how many a job holds, free memory as the driver says;
    --json: each GPU, and the cores and memory the site offers jobs and each job holds), days left on its
    certificate (marked `expiring` under 30, see `flctl certs`), and warns of certificates expiring soon. Relays are
    listed with the sites and relays below them indented under them (a hierarchical federation; --json gives each
    one's parent)."""
    from flctl.node.admin.site_resources import gpu_cell, resources_json
    from flctl.node.admin.site_tree import shown_name, tree_order

    with connect(kit) as admin:
        sites = admin.list_sites()
    now = time.time()
    ordered = tree_order(sites)
    if json_out:
        terminal.print_json([{"name": s.name, "org": s.org, "online": s.online, "last_heartbeat": s.last_heartbeat,
                              "running_jobs": s.running_jobs, "cert_expires": s.not_after,
                              "cert_days_left": round((s.not_after - now) / 86400, 2) if s.not_after else None,
                              "cert_expiring": bool(s.not_after) and expiring((s.not_after - now) / 86400),
                              "isolation": s.isolation or None, "parent": s.parent or None,
                              "resources": resources_json(s.resources)} for _, s in ordered])
        return
    terminal.table(["site", "org", "state", "last heartbeat", "running jobs", "isolation", "gpus", "cert days"],
                   [(shown_name(depth, s.name), s.org, "online" if s.online else "offline",
                     f"{now - s.last_heartbeat:.0f}s ago", ", ".join(s.running_jobs) or "-", s.isolation or "-",
                     gpu_cell(s.resources), _cert_cell(s.not_after, now))
                    for depth, s in ordered])
    for s in sites:
        if s.not_after and s.not_after - now < 30 * 86400:
            terminal.warning(f"the certificate of site '{s.name}' expires in {(s.not_after - now) / 86400:.0f} days")


def _cert_cell(not_after: float, now: float) -> str:
    """Days left on the site's certificate, `(expiring)` under 30; '-' when not known."""
    if not not_after:
        return "-"
    left = (not_after - now) / 86400
    flag = mark(left)
    return f"{left:.0f} ({flag})" if flag else f"{left:.0f}"
