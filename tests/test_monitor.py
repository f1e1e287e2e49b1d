"""``sitewatch monitor`` over a watched folder of demo scenes: the first pass ingests and analyzes, a new
scene raises the rule's alert once (catalog, log, webhook on loopback, e-mail through a local SMTP
server), and running again finds nothing new. A monitor killed after ingest (scenes from a STAC API)
is taken up by the next pass, which raises exactly the missing alert; a webhook refused at delivery
is retried on the next run, and delivered once."""

from __future__ import annotations

import email
import http.server
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

import sitewatch.analyze
import sitewatch.ingest.stac
from sitewatch.catalog.models import Alert
from sitewatch.demo.generator import DemoSite, generate
from sitewatch.errors import InputError
from sitewatch.ingest.sources import SceneSource
from sitewatch.settings import Settings
from sitewatch.watch.monitor import PassReport, Sources, monitor_once, parse_every
from sitewatch.watch.notify import configure, email_target, webhook_target
from sitewatch.watch.rules import ChangeWatch, add_rule
from sitewatch.workspace import Workspace
from tests.conftest import run_sitewatch
from tests.test_watch import NEW_BUILDINGS, logged, site_with_zones

pytestmark = pytest.mark.usefixtures("no_proxies")

LOOPBACK = "127.0.0.1"


# --- local receivers -----------------------------------------------------------------------------


class _Hooks(http.server.ThreadingHTTPServer):
    received: list[dict[str, Any]]


class _HookHandler(http.server.BaseHTTPRequestHandler):
    server: _Hooks

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()


class _Mailbox:
    """An aiosmtpd handler that keeps every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@dataclass
class Receivers:
    """A webhook receiver and an SMTP server on loopback."""

    hooks: _Hooks
    mailbox: _Mailbox
    smtp_port: int

    @property
    def webhook(self) -> str:
        return f"http://{LOOPBACK}:{self.hooks.server_address[1]}/alerts"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def receivers() -> Iterator[Receivers]:
    hooks = _Hooks((LOOPBACK, 0), _HookHandler)
    hooks.received = []
    thread = threading.Thread(target=hooks.serve_forever, daemon=True)
    thread.start()
    mailbox = _Mailbox()
    port = _free_port()
    smtp = Controller(mailbox, hostname=LOOPBACK, port=port)
    smtp.start()
    try:
        yield Receivers(hooks, mailbox, port)
    finally:
        smtp.stop()
        hooks.shutdown()
        hooks.server_close()


# --- one monitored workspace, three passes --------------------------------------------------------


@dataclass
class Monitored:
    """A workspace watched through three passes, and what each pass and receiver saw."""

    root: Path
    watched: Path
    truth: DemoSite
    passes: list[PassReport] = field(default_factory=list)
    logs: list[list[dict[str, Any]]] = field(default_factory=list)  # the alert log after each pass
    hooks: list[int] = field(default_factory=list)  # webhook POSTs received by the end of each pass
    mails: list[int] = field(default_factory=list)  # e-mails received by the end of each pass


def loopback_settings(root: Path) -> Settings:
    """Settings that let the webhook reach loopback: the allowed hosts STAC uses."""
    return Settings(workspace=root, allowed_hosts=(LOOPBACK,))


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> DemoSite:
    return generate(tmp_path_factory.mktemp("scenes"), seed=7)


@pytest.fixture(scope="module")
def monitored(truth: DemoSite, receivers: Receivers, tmp_path_factory: pytest.TempPathFactory) -> Monitored:
    """Scenes 0 and 2 (1 is cloudy) in the watched folder; a pass; a change rule over the new
    buildings; the expansion's scene copied in; a pass; and one more pass."""
    base = tmp_path_factory.mktemp("monitor")
    root = site_with_zones(base / "ws", truth)
    watched = base / "incoming"
    (watched / "day-one").mkdir(parents=True)
    shutil.copy2(truth.scenes[0].path, watched / "day-one")
    shutil.copy2(truth.scenes[2].path, watched)
    (watched / ".partial.tif").write_bytes(b"half a file")  # hidden: a copy still in progress
    run = Monitored(root, watched, truth)

    def one_pass() -> None:
        with Workspace.open(root, loopback_settings(root)) as ws:
            run.passes.append(monitor_once(ws, Sources(folders=(watched,)), objects=None))
        run.logs.append(logged(root))
        run.hooks.append(len(receivers.hooks.received))
        run.mails.append(len(receivers.mailbox.messages))

    with Workspace.open(root, loopback_settings(root)) as ws:
        targets = [webhook_target(receivers.webhook, ws.settings.allowed_hosts)]
        targets.append(email_target(f"{LOOPBACK}:{receivers.smtp_port}", ["analyst@example.org"], "sw@example.org"))
        configure(ws, targets)
    one_pass()
    with Workspace.open(root) as ws:
        add_rule(ws, truth.name, ChangeWatch("appeared", 1000.0, NEW_BUILDINGS), "expansion")
    shutil.copy2(truth.scenes[3].path, watched)
    one_pass()
    one_pass()
    return run


def test_first_pass_ingests_the_folder_and_analyzes_without_alerts(monitored: Monitored) -> None:
    first = monitored.passes[0]
    assert sorted(Path(o.source).name for o in first.ingested) == [
        monitored.truth.scenes[0].path.name,
        monitored.truth.scenes[2].path.name,
    ]
    assert all(o.status == "ingested" for o in first.ingested)
    assert first.analyzed == (monitored.truth.name,) and first.failures == ()
    assert first.alerts == first.deliveries == first.repaired == ()
    assert monitored.logs[0] == [] and monitored.hooks[0] == monitored.mails[0] == 0


def test_new_scene_raises_the_rule_alert_once_and_logs_it(monitored: Monitored) -> None:
    second = monitored.passes[1]
    assert [(Path(o.source).name, o.status) for o in second.ingested] == [
        (monitored.truth.scenes[3].path.name, "ingested")
    ]
    expansion = next(e for e in monitored.truth.events if e.kind == "appeared")
    [alert] = second.alerts
    assert (alert.rule, alert.acquired) == ("expansion", expansion.date_after)
    assert [record["id"] for record in monitored.logs[1]] == [alert.id]
    assert monitored.logs[1][0]["summary"] == alert.summary


def test_alert_is_delivered_by_webhook_and_email(monitored: Monitored, receivers: Receivers) -> None:
    [alert] = monitored.passes[1].alerts
    assert sorted((d.channel, d.alert_id, d.error) for d in monitored.passes[1].deliveries) == [
        ("email", alert.id, None),
        ("webhook", alert.id, None),
    ]
    assert monitored.hooks[1] == monitored.mails[1] == 1
    [posted] = receivers.hooks.received[:1]
    assert posted == monitored.logs[1][0]  # the webhook body is the log line
    [mail] = receivers.mailbox.messages[:1]
    assert mail["To"] == "analyst@example.org" and "sitewatch alert: expansion at" in mail["Subject"]
    assert alert.summary in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]


def test_running_again_finds_nothing_new(monitored: Monitored) -> None:
    third = monitored.passes[2]
    assert third == PassReport((), (), (), (), (), ())
    assert monitored.logs[2] == monitored.logs[1]
    assert (monitored.hooks[2], monitored.mails[2]) == (monitored.hooks[1], monitored.mails[1])


def test_cli_monitor_once_and_bad_input(monitored: Monitored, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(monitored.root, root)
    shown = run_sitewatch("monitor", "--once", "--folder", monitored.watched, "--json", workspace=root)
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)
    assert summary == {
        "ingested": [], "analyzed": [], "failures": [], "alerts": [], "deliveries": [], "repaired": [], "retried": []
    }  # fmt: skip
    for args, message in [
        (("--once",), "give a folder to watch (--folder DIR) or a STAC API (--stac URL)"),
        (("--once", "--folder", monitored.watched, "--every", "soon"), "'soon' is not an interval"),
        (("--once", "--folder", tmp_path / "nowhere"), "nowhere: not a folder"),
    ]:
        bad = run_sitewatch("monitor", *args, workspace=root)
        assert bad.returncode == 1 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    assert logged(root) == monitored.logs[2]


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800.0), ("6h", 21600.0), ("1d", 86400.0), ("90s", 90.0)])
def test_every_parses_intervals(text: str, seconds: float) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "6", "0h", "-1h", "6 hours", "h"])
def test_every_refuses_other_text(text: str) -> None:
    with pytest.raises(InputError, match="--every"):
        parse_every(text)


# --- killed mid-run, scenes from a STAC API, a webhook refused then retried ------------------------


def test_killed_after_ingest_the_next_pass_raises_exactly_the_missing_alert(
    monitored: Monitored, receivers: Receivers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = monitored.truth
    root = tmp_path / "ws"
    shutil.copytree(monitored.root, root)
    searches: list[tuple[tuple[float, float, float, float], datetime | None]] = []

    def stac_api(
        url: str, collections: list[str], bbox: tuple[float, float, float, float], date_from: Any, *_: Any, **__: Any
    ) -> list[SceneSource]:
        """A STAC API holding scenes 4 to 6: those acquired from DATE_FROM on."""
        searches.append((bbox, date_from))
        later = [s for s in truth.scenes[4:7] if date_from is None or s.acquired >= date_from]
        return [SceneSource(s.path, f"{url}#{s.path.stem}", acquired=s.acquired) for s in later]

    monkeypatch.setattr(sitewatch.ingest.stac, "sources_from_stac_api", stac_api)
    sources = Sources(stac_api="http://stac.example.org/api")
    with Workspace.open(root) as ws:
        add_rule(ws, truth.name, ChangeWatch("removed", 1000.0), "demolition")
        hooks_before = len(receivers.hooks.received)

        def killed(*_: Any, **__: Any) -> Any:
            raise KeyboardInterrupt  # the monitor is killed once the scenes are ingested

        with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
            patched.setattr(sitewatch.analyze, "analyze_site", killed)
            monitor_once(ws, sources, objects=None)
        assert len(ws.catalog.observations(ws.catalog.site(truth.name))) == 6
        assert [a.rule for a in ws.catalog.alerts()] == ["expansion"]

    # The next run: nothing new to fetch, the site analyzed, exactly the demolition alert. The
    # webhook is refused this time (loopback without the allowed hosts): not fatal, tried next run.
    with Workspace.open(root) as ws:
        resumed = monitor_once(ws, sources, objects=None)
    demolition = next(e for e in truth.events if e.kind == "removed")
    assert resumed.ingested == () and resumed.analyzed == (truth.name,) and resumed.failures == ()
    [alert] = resumed.alerts
    assert (alert.rule, alert.acquired) == ("demolition", demolition.date_after)
    assert [r["id"] for r in logged(root)] == [a.id for a in _alerts(root)] == [1, alert.id]
    assert {(d.channel, d.error is None) for d in resumed.deliveries} == {("webhook", False), ("email", True)}
    [refused] = [d for d in resumed.deliveries if d.channel == "webhook"]
    assert "loopback address" in (refused.error or "") and len(receivers.hooks.received) == hooks_before

    # STAC was searched over the site's footprint, from just after its latest image on.
    site_bbox = truth.site.bounds
    assert all(bbox == pytest.approx(site_bbox) for bbox, _ in searches)
    assert searches[0][1] > truth.scenes[3].acquired and searches[-1][1] > truth.scenes[6].acquired

    with Workspace.open(root, loopback_settings(root)) as ws:
        again = monitor_once(ws, sources, objects=None)
    assert again.alerts == again.ingested == () and again.analyzed == ()
    assert [(d.channel, d.alert_id, d.error) for d in again.deliveries] == [("webhook", alert.id, None)]
    assert [posted["id"] for posted in receivers.hooks.received[hooks_before:]] == [alert.id]


def _alerts(root: Path) -> list[Alert]:
    with Workspace.open(root) as ws:
        return ws.catalog.alerts()
