"""The server's own `local/alerts.yml` (never signed): what to do when the fleet needs a person.

    webhook:                                  # each alert is POSTed as JSON
      url: https://hooks.example.org/flctl
      headers: {Authorization: Bearer s3cret}
      timeout_s: 5
    command: [/usr/local/bin/page-oncall, --team, fl]   # gets the alert as JSON on stdin, FLCTL_ALERT_* in its env
    conditions: [site_offline, job_failed, cert_expiring, disk_low]   # default: all four
    cert_expiring_days: 30
    disk_low_mb: 1024
    check_interval_s: 10
    retries: 5                                # tries after the first, waiting backoff_s, then twice that...
    backoff_s: 1

Read once, at start (`flctl.node.server.alerting` acts on it). A key that is not a setting, or a value that is not
allowed, stops the server with a KitError (exit 2) naming the file, the line and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError

from flctl.provisioner.errors import InputError, KitError
from flctl.provisioner.schema_messages import message
from flctl.provisioner.yaml_source import YamlDocument, format_loc, load_yaml

Condition = Literal["site_offline", "job_failed", "cert_expiring", "disk_low"]
CONDITIONS: tuple[Condition, ...] = ("site_offline", "job_failed", "cert_expiring", "disk_low")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookSpec(_Strict):
    """Where alerts are POSTed as JSON."""

    url: AnyHttpUrl = Field(description="http:// or https:// address that receives each alert as a JSON POST")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers (an Authorization token)")
    timeout_s: float = Field(5.0, gt=0, le=300, description="How long one POST may take")


class AlertsSpec(_Strict):
    """The server's alert hooks."""

    webhook: WebhookSpec | None = Field(None, description="POST each alert as JSON here")
    command: list[str] | None = Field(None, min_length=1, description="Run this (no shell) for each alert, the "
                                      "alert as JSON on its stdin")
    conditions: list[Condition] = Field(default_factory=lambda: list(CONDITIONS),
                                        description="Which conditions alert")
    cert_expiring_days: float = Field(30, gt=0, le=3650, description="A certificate with fewer days left alerts")
    disk_low_mb: float = Field(1024, ge=0, description="Free space under the workspace below this alerts")
    check_interval_s: float = Field(10, ge=0.2, le=3600, description="How often the conditions are checked")
    retries: int = Field(5, ge=0, le=100, description="Tries after the first when a delivery fails")
    backoff_s: float = Field(1, gt=0, le=3600, description="Wait before the first retry; doubled each time, up to "
                             "10 minutes")


def alerts_path(kit_root: Path) -> Path:
    return kit_root / "local" / "alerts.yml"


def load_alerts(path: Path) -> AlertsSpec | None:
    """The alert hooks in `path`; None when there is no such file or it is empty (no alerts)."""
    if not path.exists():
        return None
    try:
        doc = load_yaml(path)
    except InputError as exc:
        raise KitError(str(exc)) from None
    if doc.data is None:
        return None
    try:
        return AlertsSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise KitError(_where(doc, exc)) from None


def _where(doc: YamlDocument, exc: ValidationError) -> str:
    """`FILE:LINE: KEY: what is wrong` for the first error."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    if isinstance(doc.data, dict) and loc and loc[0] == "command" and isinstance(doc.data.get("command"), str):
        return f"{doc.path}:{doc.line_of(loc)}: command: must be a list, e.g. [/usr/local/bin/page, --team, fl]"
    line = doc.line_of(loc)
    where = f"{doc.path}:{line}" if line else doc.path
    return f"{where}: {format_loc(loc) or 'the file'}: {message(err, AlertsSpec)}"
