"""Alert delivery: a webhook POST to a real HTTP receiver on 127.0.0.1, a real command, retries with backoff; and
local/alerts.yml refused with its file, line and key."""

from __future__ import annotations

import http.server
import itertools
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flctl.node.config.alerts import WebhookSpec, load_alerts
from flctl.node.server.alert_delivery import Channel, post_json, run_command
from flctl.provisioner.errors import KitError

NOTICE = {"status": "firing", "condition": "site_offline", "subject": "site-2", "message": "site site-2 is offline",
          "details": {"site": "site-2"}}


class Receiver(http.server.ThreadingHTTPServer):
    """Records each POSTed JSON body; answers 503 to the first `fail_first` requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, object]] = []
        self.statuses: list[int] = []
        self.fail_first = fail_first
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status = 503 if len(self.server.statuses) < self.server.fail_first else 200
        self.server.statuses.append(status)
        if status == 200:
            self.server.bodies.append({**body, "_auth": self.headers.get("Authorization")})
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server = Receiver(getattr(request, "param", 0))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def wait_for(check, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_webhook_posts_the_notice_as_json_with_its_headers(receiver):
    post_json(WebhookSpec.model_validate({"url": receiver.url, "headers": {"Authorization": "Bearer t"}}))(NOTICE)
    assert receiver.bodies == [{**NOTICE, "_auth": "Bearer t"}]


@pytest.mark.parametrize("receiver", [2], indirect=True)
def test_a_failing_webhook_is_tried_again_until_it_takes_the_notice(receiver):
    """503 twice, then 200: three tries, one notice received."""
    stopped = threading.Event()
    channel = Channel("webhook", post_json(WebhookSpec.model_validate({"url": receiver.url})), 5, 0.05, stopped)
    channel.put(NOTICE)
    wait_for(lambda: receiver.bodies)
    stopped.set()
    assert receiver.statuses == [503, 503, 200] and len(receiver.bodies) == 1


def test_retries_wait_longer_each_time_and_give_up_after_the_last():
    """Each try's delay doubles from backoff_s; after `retries` more tries the notice is dropped, the next one goes."""
    tries: list[tuple[float, str]] = []

    def deliver(notice):
        tries.append((time.monotonic(), notice["subject"]))
        if notice["subject"] == "bad":
            raise OSError("refused")

    stopped = threading.Event()
    channel = Channel("webhook", deliver, retries=3, backoff_s=0.05, stopped=stopped)
    channel.put({**NOTICE, "subject": "bad"})
    channel.put({**NOTICE, "subject": "good"})
    wait_for(lambda: any(s == "good" for _, s in tries))
    stopped.set()
    assert [s for _, s in tries] == ["bad"] * 4 + ["good"]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(tries[:4])]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2


def test_command_gets_the_notice_on_stdin_and_in_its_environment(tmp_path):
    out = tmp_path / "got.json"
    script = tmp_path / "hook.py"
    script.write_text("import json, os, sys\nnotice = json.load(sys.stdin)\n"
                      f"open({str(out)!r}, 'w').write(json.dumps([notice, os.environ['FLCTL_ALERT_SUBJECT']]))\n")
    run_command([sys.executable, str(script)])(NOTICE)
    assert json.loads(out.read_text()) == [NOTICE, "site-2"]
    with pytest.raises(RuntimeError, match="exited with 3: nope"):
        run_command([sys.executable, "-c", "import sys; print('nope', file=sys.stderr); sys.exit(3)"])(NOTICE)


@pytest.mark.parametrize(("text", "expected"), [
    ("webhook:\n  url: http://127.0.0.1:9/x\n  timout_s: 3\n", ":3: webhook.timout_s: unknown key 'timout_s'"),
    ("retries: 2\nbackof_s: 1\n", ":2: backof_s: unknown key 'backof_s'"),
    ("conditions: [site_offline, jobs_failed]\n", ":1: conditions[1]: 'jobs_failed' is not allowed"),
    ("webhook: {url: http://127.0.0.1:9}\ncheck_interval_s: -1\n", ":2: check_interval_s: -1 is"),
    ("command: page-me\n", ":1: command: must be a list"),
    ("webhook: {url: [\n", "malformed YAML"),
])
def test_a_bad_alerts_file_is_refused_naming_file_line_and_key(tmp_path, text, expected):
    path = tmp_path / "alerts.yml"
    path.write_text(text)
    with pytest.raises(KitError) as err:
        load_alerts(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value)


def test_no_alerts_file_or_an_empty_one_means_no_alerts(tmp_path):
    assert load_alerts(tmp_path / "alerts.yml") is None
    (tmp_path / "alerts.yml").write_text("# nothing yet\n")
    assert load_alerts(Path(tmp_path / "alerts.yml")) is None
