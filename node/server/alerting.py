"""The server's alert loop (`local/alerts.yml`): every `check_interval_s`, gather the facts (sites offline, jobs
failed since the server started, certificates close to expiry, free disk under the workspace), let `alert_rules`
say what fired and what cleared, and hand the notices to the hooks' channels (`alert_delivery`). It runs in a
thread of its own and reads only what the server keeps anyway: nothing waits for it.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
import time
from typing import Any

from flctl.node.config.alerts import AlertsSpec
from flctl.node.jobs.job_status import JobStatus
from flctl.node.server.alert_delivery import Channel, channels
from flctl.node.server.alert_rules import Alert, AlertBook, CertLeft, Facts, FailedJob, holding
from flctl.node.server.certificates import known_certificates, own_certificate
from flctl.node.server.context import ServerContext

log = logging.getLogger("flctl.server")


def facts(ctx: ServerContext, since: float, now: float) -> Facts:
    """What holds now. Silence before `since` (this server's start) is forgiven, so sites have a heartbeat timeout
    to come back after a restart; only jobs that failed since then count."""
    offline = tuple(s.name for s in ctx.store.sites() if not ctx.online(s, now, since))
    failed = tuple(FailedJob(j.id, j.name, j.error) for j in ctx.store.list_jobs((JobStatus.FAILED,))
                   if j.ended_at >= since)
    certs = tuple(CertLeft(c.name, c.kind, (c.not_after - now) / 86400)
                  for c in known_certificates(ctx.store, own_certificate(ctx.kit.info)))
    try:
        free: int | None = shutil.disk_usage(ctx.workspace).free
    except OSError:
        free = None
    return Facts(offline, failed, certs, str(ctx.workspace), free, ctx.disk.full)


def notice(alert: Alert, status: str, ctx: ServerContext, now: float) -> dict[str, Any]:
    """What a hook receives (the webhook's JSON body, the command's stdin)."""
    return {"status": status, "condition": alert.condition, "subject": alert.subject, "message": alert.message,
            "project": ctx.project, "server": ctx.kit.info.name,
            "time": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(), "details": alert.details}


class Alerting:
    def __init__(self, ctx: ServerContext, spec: AlertsSpec) -> None:
        self._ctx = ctx
        self._spec = spec
        self._book = AlertBook()
        self._stopped = threading.Event()
        self._channels: list[Channel] = []

    def start(self) -> None:
        self._channels = channels(self._spec, self._stopped)
        threading.Thread(target=self._run, args=(time.time(),), daemon=True, name="alerts").start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self, since: float) -> None:
        while not self._stopped.wait(self._spec.check_interval_s):
            try:
                self.check(since)
            except Exception:  # a store that failed, a bug: logged, and the next check tries again
                log.exception("could not check the alert conditions (trying again in %gs)",
                              self._spec.check_interval_s)

    def check(self, since: float) -> None:
        now = time.time()
        seen = holding(facts(self._ctx, since, now), self._spec.conditions, self._spec.cert_expiring_days,
                       self._spec.disk_low_mb)
        fire, clear = self._book.update(seen)
        for alert, status in [*((a, "firing") for a in fire), *((a, "resolved") for a in clear)]:
            log.warning("alert %s: %s", status, alert.message)
            for channel in self._channels:
                channel.put(notice(alert, status, self._ctx, now))
