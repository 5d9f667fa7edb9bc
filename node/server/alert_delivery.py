"""Delivering alert notices: a webhook (JSON POST) and a command, each from a thread of its own with a queue, so a
slow or failing receiver delays neither the federation nor the other hook. A failed delivery is tried again after
`backoff_s`, then twice that, up to 10 minutes between tries, `retries` times; then it is logged and dropped.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from flctl.node.config.alerts import AlertsSpec, WebhookSpec

log = logging.getLogger("flctl.server")
QUEUE_SIZE = 1000  # notices waiting for one hook; past that, new ones are dropped (and logged), never waited for
MAX_BACKOFF_S = 600.0
COMMAND_TIMEOUT_S = 60.0

Deliver = Callable[[dict[str, Any]], None]
"""Sends one notice; raises (any exception) when it did not arrive."""


def post_json(hook: WebhookSpec) -> Deliver:
    def deliver(notice: dict[str, Any]) -> None:
        body = json.dumps(notice).encode()
        request = urllib.request.Request(str(hook.url), data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "flctl-alerts",
                                                  **hook.headers})
        with urllib.request.urlopen(request, timeout=hook.timeout_s) as reply:
            reply.read()  # urlopen raises HTTPError for a status of 400 or more

    return deliver


def run_command(argv: list[str]) -> Deliver:
    def deliver(notice: dict[str, Any]) -> None:
        env = {**os.environ, **{f"FLCTL_ALERT_{key.upper()}": str(notice[key])
                                for key in ("status", "condition", "subject", "message")}}
        done = subprocess.run(argv, input=json.dumps(notice).encode(), env=env, capture_output=True,
                              timeout=COMMAND_TIMEOUT_S, check=False)
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip()[-300:]
            raise RuntimeError(f"exited with {done.returncode}" + (f": {tail}" if tail else ""))

    return deliver


class Channel:
    """One hook's queue and thread."""

    def __init__(self, name: str, deliver: Deliver, retries: int, backoff_s: float, stopped: threading.Event) -> None:
        self.name = name
        self._deliver = deliver
        self._retries = retries
        self._backoff_s = backoff_s
        self._stopped = stopped
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"alerts-{name}")
        self._thread.start()

    def put(self, notice: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(notice)
        except queue.Full:
            log.error("alert %s of %s not sent by %s: %d notices are waiting already", notice["condition"],
                      notice["subject"], self.name, QUEUE_SIZE)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                notice = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self._send(notice)

    def _send(self, notice: dict[str, Any]) -> None:
        wait = self._backoff_s
        for attempt in range(self._retries + 1):
            try:
                self._deliver(notice)
                return
            except Exception as exc:  # noqa: BLE001 - a receiver's failure of any kind: tried again, then logged
                what = f"{exc.__class__.__name__}: {exc}"
            if attempt == self._retries:
                break
            log.warning("alert %s of %s: the %s failed (%s); trying again in %gs", notice["condition"],
                        notice["subject"], self.name, what, wait)
            if self._stopped.wait(wait):
                return
            wait = min(wait * 2, MAX_BACKOFF_S)
        log.error("alert %s of %s not delivered by the %s after %d tries: %s", notice["condition"], notice["subject"],
                  self.name, self._retries + 1, what)


def channels(spec: AlertsSpec, stopped: threading.Event) -> list[Channel]:
    """A channel for each hook `spec` names."""
    made = []
    if spec.webhook is not None:
        made.append(Channel("webhook", post_json(spec.webhook), spec.retries, spec.backoff_s, stopped))
    if spec.command:
        made.append(Channel("command", run_command(spec.command), spec.retries, spec.backoff_s, stopped))
    return made
