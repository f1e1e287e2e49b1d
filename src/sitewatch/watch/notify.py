"""Optional delivery of alerts by webhook and e-mail, configured in the workspace's catalog.

Each alert goes once to each channel configured when it was raised (configuring a channel does not
replay the workspace's history). Every attempt is recorded in the catalog; a failure (receiver down,
host refused, timeout) is logged and recorded, never raised, and the alert is tried again on the
next run. A channel stops at its first failure in a run: the alerts behind it would fail the same
way. Delivery is at least once: a run killed between sending and recording sends that alert again,
and receivers can tell a repeat by the alert's id.

Webhook targets follow the host rules of STAC assets (:mod:`sitewatch.io.stac`): http(s) only, no
credentials in the URL, and a host that resolves to a loopback, private or other non-public address
is refused unless it is one of the allowed hosts (``SITEWATCH_ALLOWED_HOSTS``, the setting that lets
STAC data come from such hosts). The connection's peer is checked again, and redirects are not
followed. E-mail goes through the SMTP relay the user names (typically their own), as configured.
"""

from __future__ import annotations

import json
import logging
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

import requests

from sitewatch.catalog.models import Alert, NotifyTarget
from sitewatch.errors import InputError, SitewatchError
from sitewatch.io.stac import HostPolicy, check_url, guard_session
from sitewatch.watch.alerts import alert_record
from sitewatch.workspace import Workspace

log = logging.getLogger(__name__)

WEBHOOK = "webhook"
EMAIL = "email"
CHANNELS = (WEBHOOK, EMAIL)
#: (connect, read) seconds for a webhook POST: a receiver that hangs must not hold up the monitor.
WEBHOOK_TIMEOUT_S: tuple[float, float] = (5.0, 15.0)
SMTP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Delivery:
    """One attempt to send one alert by one channel; ERROR says why it failed (None: delivered)."""

    alert_id: int
    channel: str
    error: str | None = None


def webhook_policy(url: str, allowed_hosts: Sequence[str]) -> HostPolicy:
    """The host rules for a webhook: only its own host, which may be non-public only if allowed.

    Raises:
        UnsafeHref: If URL is not an http(s) URL with a host.
    """
    host = urlsplit(url).hostname or ""
    trusted = HostPolicy(allowed_hosts=tuple(allowed_hosts)).allows(host)
    return HostPolicy.for_url(url, private_named=trusted)


def webhook_target(url: str, allowed_hosts: Sequence[str]) -> NotifyTarget:
    """A webhook: alerts from now on go as a JSON POST to URL.

    Raises:
        UnsafeHref: If URL breaks the host rules (see the module docstring).
        StacError: If its host cannot be resolved.
    """
    check_url(url, webhook_policy(url, allowed_hosts))
    return NotifyTarget(WEBHOOK, {"url": url}, datetime.now(UTC))


def parse_smtp(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or a bare HOST, port 25) of an SMTP relay.

    Raises:
        InputError: If the port is not a number from 1 to 65535, or the host is empty.
    """
    host, colon, port_text = text.strip().rpartition(":")
    if not colon:
        host, port_text = text.strip(), "25"
    try:
        port = int(port_text)
    except ValueError as exc:
        raise InputError("--smtp", f"{text!r} is not HOST:PORT") from exc
    if not host or not 0 < port < 65536:
        raise InputError("--smtp", f"{text!r} is not HOST:PORT")
    return host.strip("[]"), port


def _address(text: str, option: str) -> str:
    _name, address = parseaddr(text)
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        raise InputError(option, f"{text!r} is not an e-mail address")
    return text.strip()


def email_target(smtp: str, mail_to: Sequence[str], mail_from: str) -> NotifyTarget:
    """E-mail: alerts from now on go through the relay SMTP (``HOST:PORT``) to MAIL_TO.

    Raises:
        InputError: If the relay or an address is malformed, or no recipient is given.
    """
    host, port = parse_smtp(smtp)
    if not mail_to:
        raise InputError("--mail-to", "e-mail needs at least one recipient")
    to = [_address(a, "--mail-to") for a in mail_to]
    config = {"host": host, "port": port, "to": to, "from": _address(mail_from, "--mail-from")}
    return NotifyTarget(EMAIL, config, datetime.now(UTC))


def configure(ws: Workspace, targets: Sequence[NotifyTarget] = (), off: Sequence[str] = ()) -> list[NotifyTarget]:
    """Store TARGETS (each replacing its channel's) and stop the channels named in OFF.

    Returns:
        The channels configured now.

    Raises:
        InputError: If OFF names an unknown channel (nothing is changed then).
    """
    for channel in off:
        if channel not in CHANNELS:
            raise InputError("--off", f"{channel!r} is not one of {', '.join(CHANNELS)}")
    for target in targets:
        ws.catalog.set_notify_target(target)
    for channel in off:
        ws.catalog.remove_notify_target(channel)
    return ws.catalog.notify_targets()


def deliver_pending(ws: Workspace) -> list[Delivery]:
    """Send every alert not yet delivered to each configured channel; record each attempt.

    Returns:
        The attempts made, delivered or not (failures are also logged as warnings).
    """
    names = {site.id: site.name for site in ws.catalog.sites()}
    attempts: list[Delivery] = []
    for target in ws.catalog.notify_targets():
        send = _sender(target, ws.settings.allowed_hosts)
        for alert in ws.catalog.undelivered(target.channel):
            if alert.created < target.configured or alert.id is None:
                continue
            error = send(alert_record(alert, names.get(alert.site_id, "")), alert)
            ws.catalog.record_delivery(alert.id, target.channel, error)
            attempts.append(Delivery(alert.id, target.channel, error))
            if error is not None:
                log.warning("alert %s not sent by %s (tried again next run): %s", alert.id, target.channel, error)
                break
    return attempts


Sender = Callable[[dict[str, Any], Alert], str | None]


def _sender(target: NotifyTarget, allowed_hosts: Sequence[str]) -> Sender:
    if target.channel == WEBHOOK:
        url = str(target.config["url"])
        return lambda record, _alert: post_webhook(url, record, allowed_hosts)
    config = target.config
    return lambda record, alert: send_mail(config, record, alert)


def post_webhook(url: str, record: dict[str, Any], allowed_hosts: Sequence[str]) -> str | None:
    """POST RECORD as JSON to URL under the host rules; None if the receiver took it (2xx), else why not."""
    try:
        policy = webhook_policy(url, allowed_hosts)
        check_url(url, policy)
        with guard_session(requests.Session(), policy) as session:
            response = session.post(url, json=record, timeout=WEBHOOK_TIMEOUT_S, allow_redirects=False)
    except (SitewatchError, requests.RequestException) as exc:
        return _short(exc)
    if not 200 <= response.status_code < 300:
        return f"{url}: HTTP {response.status_code} {response.reason}"
    return None


def send_mail(config: dict[str, Any], record: dict[str, Any], alert: Alert) -> str | None:
    """Send one alert as an e-mail through the configured relay; None if it took it, else why not."""
    message = EmailMessage()
    message["Subject"] = f"sitewatch alert: {alert.rule} at {record['site']}, {alert.acquired:%Y-%m-%d}"
    message["From"] = config["from"]
    message["To"] = ", ".join(config["to"])
    message.set_content(f"{alert.summary}\n\n{json.dumps(record, indent=1, ensure_ascii=False)}\n")
    try:
        with smtplib.SMTP(config["host"], int(config["port"]), timeout=SMTP_TIMEOUT_S) as smtp:
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        return f"{config['host']}:{config['port']}: {_short(exc)}"
    return None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
