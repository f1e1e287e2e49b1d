"""The SQLite catalog: connection policy, transactions and typed queries.

SQLite's write-ahead log has a reset bug that can corrupt a database (fixed in 3.51.3, backported to
3.50.7 and 3.44.6). WAL is used only on a fixed library; otherwise the rollback journal. Writers
take the lock up front (``BEGIN IMMEDIATE``) and wait with a busy timeout, so two ingests running at
once queue instead of failing or corrupting the catalog. One transaction per logical change.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shapely import wkt
from shapely.geometry.base import BaseGeometry

from sitewatch.catalog.models import (
    Alert,
    Annotation,
    Change,
    Detection,
    DetectionRun,
    MonitoredFile,
    NotifyTarget,
    Observation,
    Review,
    Scene,
    Site,
    SiteEvent,
    SiteSource,
    StacFailure,
    WatchRule,
    Zone,
)
from sitewatch.catalog.schema import MIGRATIONS
from sitewatch.errors import AlreadyExists, NotFound, WorkspaceError

BUSY_TIMEOUT_S = 60.0
_WAL_FIXED = ((3, 44, 6), (3, 50, 7), (3, 51, 3))


def wal_is_safe(version: tuple[int, int, int] = sqlite3.sqlite_version_info) -> bool:
    """True when this SQLite library has the WAL-reset fix (3.51.3+, or the 3.50.7 / 3.44.6 backports)."""
    if version >= (3, 51, 3):
        return True
    return any(version[:2] == fixed[:2] and version >= fixed for fixed in _WAL_FIXED)


def utc_text(value: datetime) -> str:
    """ISO 8601 text in UTC, the catalog's one time format."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: times must be timezone-aware")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    """Read back :func:`utc_text`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class Catalog:
    """One workspace's catalog. Use as a context manager, or call :meth:`close`."""

    FILENAME = "catalog.sqlite"

    def __init__(self, path: Path, *, create: bool = False) -> None:
        if not create and not path.is_file():
            raise WorkspaceError(f"{path}: no catalog here (run `sitewatch init`)")
        self.path = path
        try:
            self._conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self.journal_mode = "wal" if wal_is_safe() else "delete"
            self._conn.execute(f"PRAGMA journal_mode = {self.journal_mode}")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise WorkspaceError(f"{path}: not a usable catalog ({exc})") from exc

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One logical change: all of it is committed, or none of it (writers lock up front)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise WorkspaceError(f"{self.path}: catalog schema {version} is newer than this sitewatch")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    def integrity_ok(self) -> bool:
        """SQLite's own integrity check and foreign-key check both pass."""
        ok = self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return ok and not self._conn.execute("PRAGMA foreign_key_check").fetchall()

    # sites ---------------------------------------------------------------------------------------

    def add_site(self, site: Site) -> Site:
        """Store a new site with its zones; the name must be free."""
        self.add_sites([site])
        return self.site(site.name)

    def add_sites(self, sites: Sequence[Site]) -> None:
        """Store new sites with their zones, all or none."""
        with self.transaction() as conn:
            for site in sites:
                self._insert_site(conn, site)

    def _insert_site(self, conn: sqlite3.Connection, site: Site) -> None:
        if conn.execute("SELECT 1 FROM sites WHERE name = ?", (site.name,)).fetchone():
            raise AlreadyExists(f"site {site.name!r} already exists")
        cur = conn.execute(
            "INSERT INTO sites (name, geometry_wkt, epsg, origin_x, origin_y, extent_x, extent_y,"
            " base_gsd, gsd_pinned, tags, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                site.name,
                site.geometry.wkt,
                site.epsg,
                site.origin_x,
                site.origin_y,
                site.extent_x,
                site.extent_y,
                site.base_gsd,
                int(site.gsd_pinned),
                json.dumps(list(site.tags)),
                utc_text(datetime.now(UTC)),
            ),
        )
        site_id = int(cur.lastrowid or 0)
        for zone in site.zones:
            self._insert_zone(conn, site_id, zone)

    @staticmethod
    def _insert_zone(conn: sqlite3.Connection, site_id: int, zone: Zone) -> None:
        if conn.execute("SELECT 1 FROM zones WHERE site_id = ? AND name = ?", (site_id, zone.name)).fetchone():
            raise AlreadyExists(f"zone {zone.name!r} already exists in this site")
        conn.execute(
            "INSERT INTO zones (site_id, name, geometry_wkt) VALUES (?,?,?)",
            (site_id, zone.name, zone.geometry.wkt),
        )

    def add_zone(self, site_name: str, zone: Zone) -> Site:
        """Add a named zone to a site."""
        site = self.site(site_name)
        with self.transaction() as conn:
            self._insert_zone(conn, _id(site), zone)
        return self.site(site_name)

    def remove_zone(self, site_name: str, zone_name: str) -> None:
        """Remove a named zone from a site."""
        site = self.site(site_name)
        with self.transaction() as conn:
            cur = conn.execute("DELETE FROM zones WHERE site_id = ? AND name = ?", (site.id, zone_name))
            if cur.rowcount == 0:
                raise NotFound(f"site {site_name!r} has no zone {zone_name!r}")

    def site(self, name: str) -> Site:
        """The site called NAME."""
        row = self._conn.execute("SELECT * FROM sites WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = ", ".join(s.name for s in self.sites()) or "none yet"
            raise NotFound(f"no site {name!r} (sites: {known})")
        return self._site_from_row(row)

    def site_by_id(self, site_id: int) -> Site:
        """The site with this id."""
        row = self._conn.execute("SELECT * FROM sites WHERE id = ?", (site_id,)).fetchone()
        if row is None:
            raise NotFound(f"no site with id {site_id}")
        return self._site_from_row(row)

    def sites(self) -> list[Site]:
        """All sites, by name."""
        rows = self._conn.execute("SELECT * FROM sites ORDER BY name").fetchall()
        return [self._site_from_row(row) for row in rows]

    def _site_from_row(self, row: sqlite3.Row) -> Site:
        zones = tuple(
            Zone(name=z["name"], geometry=_geom(z["geometry_wkt"]), id=z["id"])
            for z in self._conn.execute("SELECT * FROM zones WHERE site_id = ? ORDER BY name", (row["id"],))
        )
        return Site(
            name=row["name"],
            geometry=_geom(row["geometry_wkt"]),
            epsg=row["epsg"],
            origin_x=row["origin_x"],
            origin_y=row["origin_y"],
            extent_x=row["extent_x"],
            extent_y=row["extent_y"],
            base_gsd=row["base_gsd"],
            gsd_pinned=bool(row["gsd_pinned"]),
            tags=tuple(json.loads(row["tags"])),
            zones=zones,
            reference_scene_id=row["reference_scene_id"],
            id=row["id"],
        )

    def remove_site(self, name: str) -> Site:
        """Remove a site with its zones, observations and changes (scenes stay)."""
        site = self.site(name)
        with self.transaction() as conn:
            conn.execute("DELETE FROM sites WHERE id = ?", (site.id,))
        return site

    def set_base_gsd(self, conn: sqlite3.Connection, site: Site, gsd: float) -> None:
        """Refine a site's base GSD inside the caller's transaction."""
        conn.execute("UPDATE sites SET base_gsd = ? WHERE id = ?", (gsd, site.id))

    # scenes --------------------------------------------------------------------------------------

    def scene_by_hash(self, sha256: str) -> Scene | None:
        """The scene with this content hash, if already ingested."""
        row = self._conn.execute("SELECT * FROM scenes WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None else _scene_from_row(row)

    def scene(self, scene_id: int) -> Scene:
        """The scene with this id."""
        row = self._conn.execute("SELECT * FROM scenes WHERE id = ?", (scene_id,)).fetchone()
        if row is None:
            raise NotFound(f"no scene with id {scene_id}")
        return _scene_from_row(row)

    def scenes(self) -> list[Scene]:
        """All scenes, by acquisition time."""
        rows = self._conn.execute("SELECT * FROM scenes ORDER BY acquired, id").fetchall()
        return [_scene_from_row(row) for row in rows]

    def insert_scene(self, conn: sqlite3.Connection, scene: Scene) -> int:
        """Insert a scene inside the caller's transaction; returns its id."""
        cur = conn.execute(
            "INSERT INTO scenes (sha256, path, source, acquired, footprint_wkt, gsd, width, height, bands,"
            " dtype, crs, transform, band_names, provider, sensor, licence, attribution, ingested, masks)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                scene.sha256,
                str(scene.path),
                scene.source,
                utc_text(scene.acquired),
                scene.footprint.wkt,
                scene.gsd,
                scene.width,
                scene.height,
                scene.bands,
                scene.dtype,
                scene.crs,
                None if scene.transform is None else json.dumps(list(scene.transform)),
                json.dumps(list(scene.band_names)),
                scene.provider,
                scene.sensor,
                scene.licence,
                scene.attribution,
                utc_text(datetime.now(UTC)),
                json.dumps([[kind, str(path)] for kind, path in scene.masks]),
            ),
        )
        return int(cur.lastrowid or 0)

    # observations --------------------------------------------------------------------------------

    def insert_observation(self, conn: sqlite3.Connection, obs: Observation) -> int:
        """Insert a site's observation of a scene inside the caller's transaction, or, where the site
        already has one of that scene (a grid rebuilt on a finer base), overwrite that row in place.

        Its id stays, and with it what cites it: the rules' seen sets (a rebuilt image is not new to
        them), alerts and changes. Returns the id.
        """
        row = conn.execute(
            "INSERT INTO observations (site_id, scene_id, level, gsd, path, width, height, acquired,"
            " valid_fraction, flags, align_status, align_reason, alignment, masked_fraction)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (site_id, scene_id) DO UPDATE SET level = excluded.level, gsd = excluded.gsd,"
            " path = excluded.path, width = excluded.width, height = excluded.height,"
            " acquired = excluded.acquired, valid_fraction = excluded.valid_fraction, flags = excluded.flags,"
            " align_status = excluded.align_status, align_reason = excluded.align_reason,"
            " alignment = excluded.alignment, masked_fraction = excluded.masked_fraction"
            " RETURNING id",
            (
                obs.site_id,
                obs.scene_id,
                obs.level,
                obs.gsd,
                str(obs.path),
                obs.width,
                obs.height,
                utc_text(obs.acquired),
                obs.valid_fraction,
                json.dumps(list(obs.flags)),
                obs.align_status,
                obs.align_reason,
                None if obs.alignment is None else json.dumps(obs.alignment),
                obs.masked_fraction,
            ),
        ).fetchone()
        return int(row[0])

    def update_alignment(self, conn: sqlite3.Connection, obs: Observation) -> None:
        """Store an observation's new file and alignment in place (its id, and changes citing it, stay)."""
        conn.execute(
            "UPDATE observations SET path = ?, align_status = ?, align_reason = ?, alignment = ?,"
            " masked_fraction = ?, flags = ? WHERE id = ?",
            (
                str(obs.path),
                obs.align_status,
                obs.align_reason,
                None if obs.alignment is None else json.dumps(obs.alignment),
                obs.masked_fraction,
                json.dumps(list(obs.flags)),
                obs.id,
            ),
        )

    def pin_reference(self, site: Site, scene_id: int | None) -> None:
        """Pin (or with None, unpin) the scene whose observation a site's others are aligned to."""
        with self.transaction() as conn:
            conn.execute("UPDATE sites SET reference_scene_id = ? WHERE id = ?", (scene_id, site.id))

    def observations(self, site: Site) -> list[Observation]:
        """A site's observations in time order."""
        rows = self._conn.execute(
            "SELECT * FROM observations WHERE site_id = ? ORDER BY acquired, id", (site.id,)
        ).fetchall()
        return [_observation_from_row(row) for row in rows]

    def all_observation_paths(self) -> set[str]:
        """Every observation file the catalog refers to (to find orphans)."""
        return {row[0] for row in self._conn.execute("SELECT path FROM observations")}

    # changes -------------------------------------------------------------------------------------

    def replace_changes(self, site: Site, detector: str, changes: Sequence[Change]) -> list[Change]:
        """Replace a site's changes from DETECTOR with a new set, in one transaction."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM changes WHERE site_id = ? AND detector = ?", (site.id, detector))
            for ch in changes:
                conn.execute(
                    "INSERT INTO changes (site_id, before_id, after_id, kind, geometry_wkt, area_m2, confidence,"
                    " date_from, date_to, detector, attrs, persistence, persistence_reason, unseen, ended,"
                    " history) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        ch.site_id,
                        ch.before_id,
                        ch.after_id,
                        ch.kind,
                        ch.geometry.wkt,
                        ch.area_m2,
                        ch.confidence,
                        utc_text(ch.date_from),
                        utc_text(ch.date_to),
                        ch.detector,
                        json.dumps(ch.attrs),
                        ch.persistence,
                        ch.persistence_reason,
                        json.dumps([utc_text(when) for when in ch.unseen]),
                        None if ch.ended is None else utc_text(ch.ended),
                        json.dumps([[obs_id, state] for obs_id, state in ch.history]),
                    ),
                )
        return self.changes(site)

    def changes(self, site: Site, persistence: str | None = None) -> list[Change]:
        """A site's changes, by date then area (largest first); only those of one PERSISTENCE if given."""
        rows = self._conn.execute(
            "SELECT * FROM changes WHERE site_id = ? AND (? IS NULL OR persistence = ?)"
            " ORDER BY date_to, area_m2 DESC, id",
            (site.id, persistence, persistence),
        ).fetchall()
        return [_change_from_row(row) for row in rows]

    # detections and watch rules ------------------------------------------------------------------

    def replace_detections(
        self,
        site: Site,
        *,
        source: str,
        cls: str,
        colour: str | None,
        observation_ids: Sequence[int],
        detections: Sequence[Detection],
    ) -> list[Detection]:
        """Replace the detections of one SOURCE, CLS and COLOUR on OBSERVATION_IDS with a new set, in
        one transaction, so that searching again does not store the same object twice."""
        with self.transaction() as conn:
            for obs_id in observation_ids:
                conn.execute(
                    "DELETE FROM detections WHERE site_id = ? AND observation_id = ? AND source = ? AND class = ?"
                    " AND colour IS ?",
                    (site.id, obs_id, source, cls, colour),
                )
            ids = [self._insert_detection(conn, det) for det in detections]
        return [self._detection(i) for i in ids]

    @staticmethod
    def _insert_detection(conn: sqlite3.Connection, det: Detection) -> int:
        cur = conn.execute(
            "INSERT INTO detections (site_id, observation_id, class, score, geometry_wkt, colour, length_m,"
            " width_m, source, attrs) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                det.site_id,
                det.observation_id,
                det.cls,
                det.score,
                det.geometry.wkt,
                det.colour,
                det.length_m,
                det.width_m,
                det.source,
                json.dumps(det.attrs),
            ),
        )
        return int(cur.lastrowid or 0)

    def _detection(self, detection_id: int) -> Detection:
        row = self._conn.execute("SELECT * FROM detections WHERE id = ?", (detection_id,)).fetchone()
        if row is None:
            raise NotFound(f"no detection with id {detection_id}")
        return _detection_from_row(row)

    def detections(
        self, site: Site, *, source: str | None = None, observation_id: int | None = None
    ) -> list[Detection]:
        """A site's detections, best score first; only those of SOURCE or OBSERVATION_ID if given."""
        rows = self._conn.execute(
            "SELECT * FROM detections WHERE site_id = ? AND (? IS NULL OR source = ?)"
            " AND (? IS NULL OR observation_id = ?) ORDER BY score DESC, id",
            (site.id, source, source, observation_id, observation_id),
        ).fetchall()
        return [_detection_from_row(row) for row in rows]

    def record_detection_run(self, run: DetectionRun, detections: Sequence[Detection]) -> DetectionRun:
        """Store one detector pass over one observation and its DETECTIONS, replacing the observation's
        earlier pass and detections of the same source, in one transaction (so re-running is idempotent)."""
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM detections WHERE site_id = ? AND observation_id = ? AND source = ?",
                (run.site_id, run.observation_id, run.source),
            )
            conn.execute(
                "DELETE FROM detection_runs WHERE observation_id = ? AND source = ?", (run.observation_id, run.source)
            )
            cur = conn.execute(
                "INSERT INTO detection_runs (site_id, observation_id, source, model, observation_path, gsd_m,"
                " resolvable, reason, counts, clear, seconds, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run.site_id,
                    run.observation_id,
                    run.source,
                    run.model,
                    str(run.observation_path),
                    run.gsd,
                    int(run.resolvable),
                    run.reason,
                    json.dumps(run.counts),
                    json.dumps(sorted(run.clear.items(), key=lambda kv: (kv[0] is not None, kv[0] or ""))),
                    run.seconds,
                    utc_text(run.created),
                ),
            )
            run_id = int(cur.lastrowid or 0)
            for det in detections:
                self._insert_detection(conn, det)
        row = self._conn.execute("SELECT * FROM detection_runs WHERE id = ?", (run_id,)).fetchone()
        return _run_from_row(row)

    def detection_runs(self, site: Site, *, source: str | None = None) -> list[DetectionRun]:
        """A site's detector passes, newest first; only those of SOURCE if given."""
        rows = self._conn.execute(
            "SELECT * FROM detection_runs WHERE site_id = ? AND (? IS NULL OR source = ?)"
            " ORDER BY created DESC, id DESC",
            (site.id, source, source),
        ).fetchall()
        return [_run_from_row(row) for row in rows]

    def add_rule(self, rule: WatchRule) -> WatchRule:
        """Store a new watch rule; its name must be free in its site."""
        with self.transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM watch_rules WHERE site_id = ? AND name = ?", (rule.site_id, rule.name)
            ).fetchone():
                raise AlreadyExists(f"watch rule {rule.name!r} already exists for this site")
            conn.execute(
                "INSERT INTO watch_rules (site_id, name, kind, query, created, seen, last_fired_observation_id)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    rule.site_id,
                    rule.name,
                    rule.kind,
                    json.dumps(rule.query),
                    utc_text(rule.created),
                    json.dumps(sorted(rule.seen)),
                    rule.last_fired_observation_id,
                ),
            )
        return next(r for r in self.rules(self.site_by_id(rule.site_id)) if r.name == rule.name)

    def rules(self, site: Site) -> list[WatchRule]:
        """A site's watch rules, by name."""
        rows = self._conn.execute("SELECT * FROM watch_rules WHERE site_id = ? ORDER BY name", (site.id,)).fetchall()
        return [_rule_from_row(row) for row in rows]

    def rule_evaluated(
        self,
        rule: WatchRule,
        seen: Sequence[int],
        fired: int | None,
        detections: Sequence[Detection] = (),
    ) -> WatchRule:
        """Record that RULE has now seen SEEN (replacing its set), the last observation it FIRED on
        (None: unchanged), and store its DETECTIONS, all in one transaction."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE watch_rules SET seen = ?, last_fired_observation_id = COALESCE(?, last_fired_observation_id)"
                " WHERE id = ?",
                (json.dumps(sorted(set(seen))), fired, rule.id),
            )
            for det in detections:
                self._insert_detection(conn, det)
        row = self._conn.execute("SELECT * FROM watch_rules WHERE id = ?", (rule.id,)).fetchone()
        return _rule_from_row(row)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """A read-only query, for reports and tests."""
        return self._conn.execute(sql, params).fetchall()

    # watch rules of every kind, alerts, their delivery, and the monitor's memory -------------------

    def remove_rule(self, rule: WatchRule) -> None:
        """Remove a watch rule; its alerts stay, without their rule id."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM watch_rules WHERE id = ?", (rule.id,))

    def record_rule_pass(
        self,
        rule: WatchRule,
        observation: Observation,
        alert: Alert | None,
        detections: Sequence[Detection] = (),
    ) -> tuple[WatchRule, Alert | None]:
        """Record, in one transaction, that RULE has evaluated OBSERVATION and the ALERT it raised there.

        The alert is stored only if the rule has none for the observation's scene yet (a unique
        constraint, so evaluating again never alerts twice); only then are its DETECTIONS stored,
        and their ids added to its evidence as ``detection_ids``.

        Returns:
            The rule as stored now, and the alert if it is new (None if there was none, or it was
            already recorded).

        Raises:
            NotFound: If the rule has been removed meanwhile.
        """
        new_id: int | None = None
        with self.transaction() as conn:
            row = conn.execute("SELECT seen FROM watch_rules WHERE id = ?", (rule.id,)).fetchone()
            if row is None:
                raise NotFound(f"watch rule {rule.name!r} has been removed")
            if alert is not None:
                cur = conn.execute(
                    "INSERT INTO alerts (rule_id, rule, kind, site_id, scene_id, observation_id, acquired, summary,"
                    " evidence, created) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (rule_id, scene_id) DO NOTHING",
                    (
                        alert.rule_id,
                        alert.rule,
                        alert.kind,
                        alert.site_id,
                        alert.scene_id,
                        alert.observation_id,
                        utc_text(alert.acquired),
                        alert.summary,
                        json.dumps(alert.evidence),
                        utc_text(alert.created),
                    ),
                )
                if cur.rowcount == 1:
                    new_id = int(cur.lastrowid or 0)
                    if detections:
                        ids = [self._insert_detection(conn, det) for det in detections]
                        evidence = json.dumps({**alert.evidence, "detection_ids": ids})
                        conn.execute("UPDATE alerts SET evidence = ? WHERE id = ?", (evidence, new_id))
            seen = sorted({*json.loads(row["seen"]), observation.id})
            conn.execute(
                "UPDATE watch_rules SET seen = ?, last_fired_observation_id = COALESCE(?, last_fired_observation_id)"
                " WHERE id = ?",
                (json.dumps(seen), None if new_id is None else observation.id, rule.id),
            )
        stored = _rule_from_row(self._conn.execute("SELECT * FROM watch_rules WHERE id = ?", (rule.id,)).fetchone())
        if new_id is None:
            return stored, None
        return stored, _alert_from_row(self._conn.execute("SELECT * FROM alerts WHERE id = ?", (new_id,)).fetchone())

    def alerts(self) -> list[Alert]:
        """Every alert, in the order they were raised."""
        return [_alert_from_row(row) for row in self._conn.execute("SELECT * FROM alerts ORDER BY id").fetchall()]

    def set_notify_target(self, target: NotifyTarget) -> None:
        """Store (or replace) where alerts of TARGET's channel go."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO notify_targets (channel, config, configured) VALUES (?,?,?) ON CONFLICT (channel)"
                " DO UPDATE SET config = excluded.config, configured = excluded.configured",
                (target.channel, json.dumps(target.config), utc_text(target.configured)),
            )

    def remove_notify_target(self, channel: str) -> bool:
        """Stop sending alerts by CHANNEL; False if it was not configured."""
        with self.transaction() as conn:
            return conn.execute("DELETE FROM notify_targets WHERE channel = ?", (channel,)).rowcount > 0

    def notify_targets(self) -> list[NotifyTarget]:
        """The configured channels, by name."""
        rows = self._conn.execute("SELECT * FROM notify_targets ORDER BY channel").fetchall()
        return [NotifyTarget(row["channel"], json.loads(row["config"]), parse_utc(row["configured"])) for row in rows]

    def undelivered(self, channel: str) -> list[Alert]:
        """Alerts not yet delivered by CHANNEL, oldest first (whether or not they were tried)."""
        rows = self._conn.execute(
            "SELECT a.* FROM alerts a LEFT JOIN alert_deliveries d ON d.alert_id = a.id AND d.channel = ?"
            " WHERE d.delivered IS NULL ORDER BY a.id",
            (channel,),
        ).fetchall()
        return [_alert_from_row(row) for row in rows]

    def record_delivery(self, alert_id: int, channel: str, error: str | None) -> None:
        """Record one attempt to deliver an alert by CHANNEL: delivered if ERROR is None."""
        delivered = None if error is not None else utc_text(datetime.now(UTC))
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO alert_deliveries (alert_id, channel, attempts, delivered, error) VALUES (?,?,1,?,?)"
                " ON CONFLICT (alert_id, channel) DO UPDATE SET attempts = attempts + 1,"
                " delivered = excluded.delivered, error = excluded.error",
                (alert_id, channel, delivered, error),
            )

    def acknowledge_alert(self, alert_id: int) -> datetime:
        """Mark an alert as seen and dealt with (once: acknowledging again keeps the first time); when it was.

        Raises:
            NotFound: If there is no such alert.
        """
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM alerts WHERE id = ?", (alert_id,)).fetchone() is None:
                raise NotFound(f"no alert with id {alert_id}")
            conn.execute(
                "INSERT INTO alert_acks (alert_id, acknowledged) VALUES (?,?) ON CONFLICT (alert_id) DO NOTHING",
                (alert_id, utc_text(datetime.now(UTC))),
            )
        return self.acknowledged()[alert_id]

    def acknowledged(self) -> dict[int, datetime]:
        """When each acknowledged alert was acknowledged, by alert id."""
        rows = self._conn.execute("SELECT alert_id, acknowledged FROM alert_acks").fetchall()
        return {row["alert_id"]: parse_utc(row["acknowledged"]) for row in rows}

    def monitored_files(self) -> dict[Path, MonitoredFile]:
        """Every file the monitor has tried, by path."""
        rows = self._conn.execute("SELECT * FROM monitor_files").fetchall()
        return {
            Path(row["path"]): MonitoredFile(
                Path(row["path"]), row["size"], row["mtime_ns"], row["status"], row["scene_id"], row["message"] or ""
            )
            for row in rows
        }

    def remember_files(self, files: Sequence[MonitoredFile]) -> None:
        """Store what ingesting FILES gave, replacing what was known of the same paths."""
        now = utc_text(datetime.now(UTC))
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO monitor_files (path, size, mtime_ns, status, scene_id, message, checked)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT (path) DO UPDATE SET size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, status = excluded.status, scene_id = excluded.scene_id,"
                " message = excluded.message, checked = excluded.checked",
                [(str(f.path), f.size, f.mtime_ns, f.status, f.scene_id, f.message, now) for f in files],
            )

    def stac_failures(self, site: Site, api: str | None = None) -> list[StacFailure]:
        """The STAC items the monitor has failed to ingest for SITE (given up on or not), oldest first;
        with API, only those searched on it (and those recorded before the API was kept)."""
        rows = self._conn.execute(
            "SELECT * FROM monitor_stac_failures WHERE site_id = ? AND (? IS NULL OR api IS NULL OR api = ?)"
            " ORDER BY acquired, source",
            (_id(site), api, api),
        ).fetchall()
        return [_stac_failure_from_row(row) for row in rows]

    def record_stac_failure(
        self, site: Site, source: str, acquired: datetime, message: str, api: str | None = None
    ) -> StacFailure:
        """Count one more failed try of the STAC item SOURCE for SITE, searched on API; the record as it
        stands now."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO monitor_stac_failures (site_id, source, acquired, message, tries, last_tried, api)"
                " VALUES (?,?,?,?,1,?,?) ON CONFLICT (site_id, source) DO UPDATE SET acquired = excluded.acquired,"
                " message = excluded.message, tries = tries + 1, last_tried = excluded.last_tried,"
                " api = COALESCE(excluded.api, api)",
                (_id(site), source, utc_text(acquired), message, utc_text(datetime.now(UTC)), api),
            )
            row = conn.execute(
                "SELECT * FROM monitor_stac_failures WHERE site_id = ? AND source = ?", (_id(site), source)
            ).fetchone()
        return _stac_failure_from_row(row)

    def clear_stac_failure(self, site: Site, source: str) -> None:
        """Forget the failed tries of the STAC item SOURCE for SITE (it has been ingested)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM monitor_stac_failures WHERE site_id = ? AND source = ?", (_id(site), source))

    # each site's saved monitoring sources --------------------------------------------------------

    def add_site_source(self, source: SiteSource) -> SiteSource:
        """Store a monitoring source of its site; a site has each kind and target once."""
        with self.transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM site_sources WHERE site_id = ? AND kind = ? AND target = ?",
                (source.site_id, source.kind, source.target),
            ).fetchone():
                raise AlreadyExists(f"{source.target}: already a {source.kind} source of this site")
            cur = conn.execute(
                "INSERT INTO site_sources (site_id, kind, target, collections, allow_hosts, created)"
                " VALUES (?,?,?,?,?,?)",
                (
                    source.site_id,
                    source.kind,
                    source.target,
                    json.dumps(list(source.collections)),
                    json.dumps(list(source.allow_hosts)),
                    utc_text(source.created),
                ),
            )
        row = self._conn.execute("SELECT * FROM site_sources WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _site_source_from_row(row)

    def site_sources(self, site: Site | None = None) -> list[SiteSource]:
        """SITE's saved monitoring sources, in the order they were added; every site's (by site name) if None."""
        rows = self._conn.execute(
            "SELECT site_sources.* FROM site_sources JOIN sites ON sites.id = site_sources.site_id"
            " WHERE ? IS NULL OR site_id = ? ORDER BY sites.name, site_sources.id",
            (None if site is None else _id(site), None if site is None else _id(site)),
        ).fetchall()
        return [_site_source_from_row(row) for row in rows]

    def remove_site_source(self, site: Site, source_id: int) -> SiteSource:
        """Remove one of SITE's saved sources; returns it as it was.

        Raises:
            NotFound: If SITE has no source with that id (the message lists those it has).
        """
        sources = self.site_sources(site)
        removed = next((s for s in sources if s.id == source_id), None)
        if removed is None:
            known = ", ".join(str(s.id) for s in sources) or "none"
            raise NotFound(f"site {site.name!r} has no source #{source_id} (its sources: {known})")
        with self.transaction() as conn:
            conn.execute("DELETE FROM site_sources WHERE id = ?", (source_id,))
        return removed

    # the analyst's annotations, change reviews and events ---------------------------------------

    def add_annotations(self, annotations: Sequence[Annotation]) -> list[Annotation]:
        """Store new annotations, all or none (an import is one transaction)."""
        ids = []
        with self.transaction() as conn:
            for a in annotations:
                cur = conn.execute(
                    "INSERT INTO annotations (site_id, geometry_wkt, label, note, scene_id, acquired, author,"
                    " created, updated) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        a.site_id,
                        a.geometry.wkt,
                        a.label,
                        a.note,
                        a.scene_id,
                        None if a.acquired is None else utc_text(a.acquired),
                        a.author,
                        utc_text(a.created),
                        utc_text(a.updated),
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
        return [self.annotation(i) for i in ids]

    def annotation(self, annotation_id: int) -> Annotation:
        """The annotation with this id."""
        row = self._conn.execute("SELECT * FROM annotations WHERE id = ?", (annotation_id,)).fetchone()
        if row is None:
            raise NotFound(f"no annotation with id {annotation_id}")
        return _annotation_from_row(row)

    def annotations(self, site: Site) -> list[Annotation]:
        """A site's annotations, oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM annotations WHERE site_id = ? ORDER BY created, id", (site.id,)
        ).fetchall()
        return [_annotation_from_row(row) for row in rows]

    def update_annotation(self, annotation: Annotation) -> Annotation:
        """Store an annotation's geometry, label, note, image, author and update time as given."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE annotations SET geometry_wkt = ?, label = ?, note = ?, scene_id = ?, acquired = ?,"
                " author = ?, updated = ? WHERE id = ?",
                (
                    annotation.geometry.wkt,
                    annotation.label,
                    annotation.note,
                    annotation.scene_id,
                    None if annotation.acquired is None else utc_text(annotation.acquired),
                    annotation.author,
                    utc_text(annotation.updated),
                    annotation.id,
                ),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no annotation with id {annotation.id}")
        return self.annotation(annotation.id or 0)

    def remove_annotation(self, annotation_id: int) -> Annotation:
        """Remove an annotation; returns it as it was."""
        annotation = self.annotation(annotation_id)
        with self.transaction() as conn:
            conn.execute("DELETE FROM annotations WHERE id = ?", (annotation_id,))
        return annotation

    def add_review(self, review: Review) -> Review:
        """Store a verdict on a change; earlier verdicts on it stay, as its history."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO reviews (site_id, change_id, verdict, reason, kind, geometry_wkt, date_from, date_to,"
                " after_scene_id, detector, reviewer, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    review.site_id,
                    review.change_id,
                    review.verdict,
                    review.reason,
                    review.kind,
                    review.geometry.wkt,
                    utc_text(review.date_from),
                    utc_text(review.date_to),
                    review.after_scene_id,
                    review.detector,
                    review.reviewer,
                    utc_text(review.created),
                ),
            )
        return self.review(int(cur.lastrowid or 0))

    def review(self, review_id: int) -> Review:
        """The review with this id."""
        row = self._conn.execute("SELECT * FROM reviews WHERE id = ?", (review_id,)).fetchone()
        if row is None:
            raise NotFound(f"no review with id {review_id}")
        return _review_from_row(row)

    def reviews(self, site: Site) -> list[Review]:
        """Every review of a site's changes, oldest first (the last one matching a change is its verdict)."""
        rows = self._conn.execute("SELECT * FROM reviews WHERE site_id = ? ORDER BY created, id", (site.id,)).fetchall()
        return [_review_from_row(row) for row in rows]

    def remove_review(self, review_id: int) -> Review:
        """Remove one review from the history; returns it as it was."""
        review = self.review(review_id)
        with self.transaction() as conn:
            conn.execute("DELETE FROM reviews WHERE id = ?", (review_id,))
        return review

    def add_event(self, event: SiteEvent) -> SiteEvent:
        """Store a dated marker on a site."""
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO site_events (site_id, happened, label, note, created) VALUES (?,?,?,?,?)",
                (event.site_id, utc_text(event.when), event.label, event.note, utc_text(event.created)),
            )
        return self.event(int(cur.lastrowid or 0))

    def event(self, event_id: int) -> SiteEvent:
        """The site event with this id."""
        row = self._conn.execute("SELECT * FROM site_events WHERE id = ?", (event_id,)).fetchone()
        if row is None:
            raise NotFound(f"no event with id {event_id}")
        return _event_from_row(row)

    def events(self, site: Site) -> list[SiteEvent]:
        """A site's events, in date order."""
        rows = self._conn.execute(
            "SELECT * FROM site_events WHERE site_id = ? ORDER BY happened, id", (site.id,)
        ).fetchall()
        return [_event_from_row(row) for row in rows]

    def update_event(self, event: SiteEvent) -> SiteEvent:
        """Store an event's date, label and note as given."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE site_events SET happened = ?, label = ?, note = ? WHERE id = ?",
                (utc_text(event.when), event.label, event.note, event.id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no event with id {event.id}")
        return self.event(event.id or 0)

    def remove_event(self, event_id: int) -> SiteEvent:
        """Remove a site event; returns it as it was."""
        event = self.event(event_id)
        with self.transaction() as conn:
            conn.execute("DELETE FROM site_events WHERE id = ?", (event_id,))
        return event


def _id(record: Site) -> int:
    if record.id is None:
        raise NotFound(f"site {record.name!r} is not stored")
    return record.id


def _geom(text: str) -> BaseGeometry:
    return wkt.loads(text)


def _scene_from_row(row: sqlite3.Row) -> Scene:
    transform = row["transform"]
    return Scene(
        sha256=row["sha256"],
        path=Path(row["path"]),
        source=row["source"],
        acquired=parse_utc(row["acquired"]),
        footprint=_geom(row["footprint_wkt"]),
        gsd=row["gsd"],
        width=row["width"],
        height=row["height"],
        bands=row["bands"],
        dtype=row["dtype"],
        crs=row["crs"],
        provider=row["provider"],
        sensor=row["sensor"],
        licence=row["licence"],
        attribution=row["attribution"],
        band_names=tuple(json.loads(row["band_names"])),
        transform=None if transform is None else tuple(json.loads(transform)),
        masks=tuple((kind, Path(path)) for kind, path in json.loads(row["masks"])),
        id=row["id"],
    )


def _observation_from_row(row: sqlite3.Row) -> Observation:
    return Observation(
        site_id=row["site_id"],
        scene_id=row["scene_id"],
        level=row["level"],
        gsd=row["gsd"],
        path=Path(row["path"]),
        width=row["width"],
        height=row["height"],
        acquired=parse_utc(row["acquired"]),
        valid_fraction=row["valid_fraction"],
        flags=tuple(json.loads(row["flags"])),
        align_status=row["align_status"],
        align_reason=row["align_reason"],
        alignment=None if row["alignment"] is None else json.loads(row["alignment"]),
        masked_fraction=row["masked_fraction"],
        id=row["id"],
    )


def _change_from_row(row: sqlite3.Row) -> Change:
    return Change(
        site_id=row["site_id"],
        before_id=row["before_id"],
        after_id=row["after_id"],
        kind=row["kind"],
        geometry=_geom(row["geometry_wkt"]),
        area_m2=row["area_m2"],
        confidence=row["confidence"],
        date_from=parse_utc(row["date_from"]),
        date_to=parse_utc(row["date_to"]),
        detector=row["detector"],
        attrs=json.loads(row["attrs"]),
        id=row["id"],
        persistence=row["persistence"],
        persistence_reason=row["persistence_reason"],
        unseen=tuple(parse_utc(text) for text in json.loads(row["unseen"])),
        ended=None if row["ended"] is None else parse_utc(row["ended"]),
        history=tuple((int(obs_id), str(state)) for obs_id, state in json.loads(row["history"])),
    )


def _detection_from_row(row: sqlite3.Row) -> Detection:
    return Detection(
        site_id=row["site_id"],
        observation_id=row["observation_id"],
        cls=row["class"],
        score=row["score"],
        geometry=_geom(row["geometry_wkt"]),
        length_m=row["length_m"],
        width_m=row["width_m"],
        source=row["source"],
        colour=row["colour"],
        attrs=json.loads(row["attrs"]),
        id=row["id"],
    )


def _run_from_row(row: sqlite3.Row) -> DetectionRun:
    return DetectionRun(
        site_id=row["site_id"],
        observation_id=row["observation_id"],
        source=row["source"],
        model=row["model"],
        observation_path=Path(row["observation_path"]),
        gsd=row["gsd_m"],
        resolvable=bool(row["resolvable"]),
        reason=row["reason"],
        counts={str(cls): int(n) for cls, n in json.loads(row["counts"]).items()},
        clear={name: float(share) for name, share in json.loads(row["clear"])},
        seconds=row["seconds"],
        created=parse_utc(row["created"]),
        id=row["id"],
    )


def _rule_from_row(row: sqlite3.Row) -> WatchRule:
    return WatchRule(
        site_id=row["site_id"],
        name=row["name"],
        kind=row["kind"],
        query=json.loads(row["query"]),
        created=parse_utc(row["created"]),
        seen=tuple(int(i) for i in json.loads(row["seen"])),
        last_fired_observation_id=row["last_fired_observation_id"],
        id=row["id"],
    )


def _alert_from_row(row: sqlite3.Row) -> Alert:
    return Alert(
        rule_id=row["rule_id"],
        rule=row["rule"],
        kind=row["kind"],
        site_id=row["site_id"],
        scene_id=row["scene_id"],
        observation_id=row["observation_id"],
        acquired=parse_utc(row["acquired"]),
        summary=row["summary"],
        evidence=json.loads(row["evidence"]),
        created=parse_utc(row["created"]),
        id=row["id"],
    )


def _stac_failure_from_row(row: sqlite3.Row) -> StacFailure:
    return StacFailure(
        site_id=row["site_id"],
        source=row["source"],
        acquired=parse_utc(row["acquired"]),
        message=row["message"],
        tries=row["tries"],
        last_tried=parse_utc(row["last_tried"]),
        api=row["api"],
    )


def _site_source_from_row(row: sqlite3.Row) -> SiteSource:
    return SiteSource(
        site_id=row["site_id"],
        kind=row["kind"],
        target=row["target"],
        created=parse_utc(row["created"]),
        collections=tuple(json.loads(row["collections"])),
        allow_hosts=tuple(json.loads(row["allow_hosts"])),
        id=row["id"],
    )


def _annotation_from_row(row: sqlite3.Row) -> Annotation:
    return Annotation(
        site_id=row["site_id"],
        geometry=_geom(row["geometry_wkt"]),
        label=row["label"],
        note=row["note"],
        scene_id=row["scene_id"],
        acquired=None if row["acquired"] is None else parse_utc(row["acquired"]),
        author=row["author"],
        created=parse_utc(row["created"]),
        updated=parse_utc(row["updated"]),
        id=row["id"],
    )


def _review_from_row(row: sqlite3.Row) -> Review:
    return Review(
        site_id=row["site_id"],
        verdict=row["verdict"],
        reason=row["reason"],
        kind=row["kind"],
        geometry=_geom(row["geometry_wkt"]),
        date_from=parse_utc(row["date_from"]),
        date_to=parse_utc(row["date_to"]),
        after_scene_id=row["after_scene_id"],
        detector=row["detector"],
        reviewer=row["reviewer"],
        created=parse_utc(row["created"]),
        change_id=row["change_id"],
        id=row["id"],
    )


def _event_from_row(row: sqlite3.Row) -> SiteEvent:
    return SiteEvent(
        site_id=row["site_id"],
        when=parse_utc(row["happened"]),
        label=row["label"],
        note=row["note"],
        created=parse_utc(row["created"]),
        id=row["id"],
    )
