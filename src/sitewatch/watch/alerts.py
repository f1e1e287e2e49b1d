"""The alert log: every alert of the catalog as one JSON line in the workspace's ``alerts.jsonl``, once.

The catalog is the record and the log follows it. Alerts are committed first; :func:`sync_log` then
appends every alert the catalog holds that the log lacks (each line carries its alert's id). A run
killed between the two loses nothing and repeats nothing: the next sync appends exactly the missing
lines. A line torn by a kill in mid-write is cut off and written again whole. The log is locked
while it is read and appended, so two processes cannot both append the same alert.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

from sitewatch.catalog.models import Alert
from sitewatch.workspace import Workspace

log = logging.getLogger(__name__)

LOG_NAME = "alerts.jsonl"


def log_path(ws: Workspace) -> Path:
    """Where the workspace's alert log is."""
    return ws.root / LOG_NAME


def alert_record(alert: Alert, site: str) -> dict[str, Any]:
    """An alert as JSON: one line of the log, and the body a webhook receives."""
    return {
        "id": alert.id,
        "site": site,
        "rule": alert.rule,
        "kind": alert.kind,
        "date": alert.acquired.isoformat(),
        "summary": alert.summary,
        "evidence": alert.evidence,
        "observation_id": alert.observation_id,
        "scene_id": alert.scene_id,
        "created": alert.created.isoformat(),
    }


def sync_log(ws: Workspace) -> list[Alert]:
    """Append to the log every alert the catalog holds that the log lacks, in order; return them.

    Raises:
        OSError: If the log cannot be read or written (the alerts stay in the catalog, and the next
            sync appends them).
    """
    path = log_path(ws)
    if not path.exists() and not ws.catalog.alerts():
        return []  # no alerts yet: no log either
    with path.open("a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0)
            data = fh.read()
            logged, end = _logged(data, path)
            if end < len(data):
                log.info("%s: cutting off a line torn by an interrupted write", path)
                fh.truncate(end)
            missing = [alert for alert in ws.catalog.alerts() if alert.id not in logged]
            if missing:
                names = {site.id: site.name for site in ws.catalog.sites()}
                lines = (json.dumps(alert_record(a, names.get(a.site_id, "")), ensure_ascii=False) for a in missing)
                fh.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return missing


def _logged(data: bytes, path: Path) -> tuple[set[int], int]:
    """The alert ids in the log's complete lines, and where the last complete line ends."""
    *complete, torn = data.split(b"\n")
    ids: set[int] = set()
    for number, line in enumerate(complete, start=1):
        try:
            ids.add(int(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            log.warning("%s:%d: not an alert record; left as it is", path, number)
    return ids, len(data) - len(torn)
