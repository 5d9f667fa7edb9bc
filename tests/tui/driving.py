"""Small helpers for driving the console with a pilot."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from textual.pilot import Pilot

from flctl.console.tui.app import ConsoleApp

from .recorded_admin import NOW, RecordedAdmin


def recorded_app(admin: RecordedAdmin, **kwargs: object) -> ConsoleApp:
    return lasting_notices(ConsoleApp(admin.connect, "localhost:8443", clock=lambda: NOW,
                                      **kwargs))  # type: ignore[arg-type]


def lasting_notices(app: ConsoleApp) -> ConsoleApp:
    """Keep notifications up for the whole test, so that a slow machine cannot expire one before it is read."""
    app.NOTIFICATION_TIMEOUT = 600
    return app


async def until(pilot: Pilot[None], condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Let the app run until `condition()` holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {condition.__doc__ or condition}")
        await pilot.pause(0.05)
    await pilot.pause()


async def online(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    await until(pilot, lambda: app.connection.state == "online" and app.jobs and app.sites)
    await pilot.pause(0.1)


def notices(app: ConsoleApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


def synchronously(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async pilot test in its own event loop (the suite has no async plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run
