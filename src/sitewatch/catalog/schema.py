"""Catalog schema, as numbered migrations applied in order (``PRAGMA user_version`` holds the count).

Plain SQL types and WKT geometry keep the schema portable to PostgreSQL/PostGIS.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sites (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        geometry_wkt TEXT NOT NULL,
        epsg INTEGER NOT NULL,
        origin_x REAL NOT NULL,
        origin_y REAL NOT NULL,
        extent_x REAL NOT NULL,
        extent_y REAL NOT NULL,
        base_gsd REAL,
        gsd_pinned INTEGER NOT NULL DEFAULT 0,
        tags TEXT NOT NULL DEFAULT '[]',
        created TEXT NOT NULL
    );
    CREATE TABLE zones (
        id INTEGER PRIMARY KEY,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        geometry_wkt TEXT NOT NULL,
        UNIQUE (site_id, name)
    );
    CREATE TABLE scenes (
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        source TEXT NOT NULL,
        acquired TEXT NOT NULL,
        footprint_wkt TEXT NOT NULL,
        gsd REAL NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        bands INTEGER NOT NULL,
        dtype TEXT NOT NULL,
        crs TEXT NOT NULL,
        transform TEXT,
        band_names TEXT NOT NULL DEFAULT '[]',
        provider TEXT,
        sensor TEXT,
        licence TEXT,
        attribution TEXT,
        ingested TEXT NOT NULL
    );
    CREATE TABLE observations (
        id INTEGER PRIMARY KEY,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        scene_id INTEGER NOT NULL REFERENCES scenes(id) ON DELETE CASCADE,
        level INTEGER NOT NULL,
        gsd REAL NOT NULL,
        path TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        acquired TEXT NOT NULL,
        valid_fraction REAL NOT NULL,
        flags TEXT NOT NULL DEFAULT '[]',
        UNIQUE (site_id, scene_id)
    );
    CREATE INDEX observations_by_site ON observations (site_id, acquired);
    CREATE TABLE changes (
        id INTEGER PRIMARY KEY,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        before_id INTEGER NOT NULL REFERENCES observations(id) ON DELETE CASCADE,
        after_id INTEGER NOT NULL REFERENCES observations(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('appeared', 'removed', 'modified')),
        geometry_wkt TEXT NOT NULL,
        area_m2 REAL NOT NULL,
        confidence REAL NOT NULL,
        date_from TEXT NOT NULL,
        date_to TEXT NOT NULL,
        detector TEXT NOT NULL,
        attrs TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX changes_by_site ON changes (site_id, date_to);
    """,
    """
    ALTER TABLE observations ADD COLUMN align_status TEXT NOT NULL DEFAULT 'pending';
    ALTER TABLE observations ADD COLUMN align_reason TEXT;
    ALTER TABLE observations ADD COLUMN alignment TEXT;
    ALTER TABLE observations ADD COLUMN masked_fraction REAL NOT NULL DEFAULT 0;
    ALTER TABLE sites ADD COLUMN reference_scene_id INTEGER REFERENCES scenes(id) ON DELETE SET NULL;
    """,
    """
    ALTER TABLE scenes ADD COLUMN masks TEXT NOT NULL DEFAULT '[]';
    """,
    """
    ALTER TABLE changes ADD COLUMN persistence TEXT
        CHECK (persistence IN ('persistent', 'transient', 'unconfirmed'));
    ALTER TABLE changes ADD COLUMN persistence_reason TEXT;
    ALTER TABLE changes ADD COLUMN unseen TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE changes ADD COLUMN ended TEXT;
    ALTER TABLE changes ADD COLUMN history TEXT NOT NULL DEFAULT '[]';
    """,
    """
    CREATE TABLE detections (
        id INTEGER PRIMARY KEY,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        observation_id INTEGER NOT NULL REFERENCES observations(id) ON DELETE CASCADE,
        class TEXT NOT NULL,
        score REAL NOT NULL,
        geometry_wkt TEXT NOT NULL,
        colour TEXT,
        length_m REAL NOT NULL,
        width_m REAL NOT NULL,
        source TEXT NOT NULL,
        attrs TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX detections_by_observation ON detections (site_id, observation_id, source);
    CREATE TABLE watch_rules (
        id INTEGER PRIMARY KEY,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('find')),
        query TEXT NOT NULL,
        created TEXT NOT NULL,
        seen TEXT NOT NULL DEFAULT '[]',
        last_fired_observation_id INTEGER REFERENCES observations(id) ON DELETE SET NULL,
        UNIQUE (site_id, name)
    );
    """,
    """
    CREATE TABLE detection_runs (
        id INTEGER PRIMARY KEY,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        observation_id INTEGER NOT NULL REFERENCES observations(id) ON DELETE CASCADE,
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        observation_path TEXT NOT NULL,
        gsd_m REAL NOT NULL,
        resolvable INTEGER NOT NULL,
        reason TEXT,
        counts TEXT NOT NULL DEFAULT '{}',
        clear TEXT NOT NULL DEFAULT '{}',
        seconds REAL NOT NULL,
        created TEXT NOT NULL,
        UNIQUE (observation_id, source)
    );
    CREATE INDEX detection_runs_by_site ON detection_runs (site_id, source);
    """,
    """
    -- SQLite cannot change a CHECK constraint in place: the rules table is rebuilt to admit new kinds.
    CREATE TABLE watch_rules_v7 (
        id INTEGER PRIMARY KEY,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('find', 'change', 'activity')),
        query TEXT NOT NULL,
        created TEXT NOT NULL,
        seen TEXT NOT NULL DEFAULT '[]',
        last_fired_observation_id INTEGER REFERENCES observations(id) ON DELETE SET NULL,
        UNIQUE (site_id, name)
    );
    INSERT INTO watch_rules_v7 (id, site_id, name, kind, query, created, seen, last_fired_observation_id)
        SELECT id, site_id, name, kind, query, created, seen, last_fired_observation_id FROM watch_rules;
    DROP TABLE watch_rules;
    ALTER TABLE watch_rules_v7 RENAME TO watch_rules;
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        rule_id INTEGER REFERENCES watch_rules(id) ON DELETE SET NULL,
        rule TEXT NOT NULL,
        kind TEXT NOT NULL,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        scene_id INTEGER NOT NULL REFERENCES scenes(id) ON DELETE CASCADE,
        observation_id INTEGER REFERENCES observations(id) ON DELETE SET NULL,
        acquired TEXT NOT NULL,
        summary TEXT NOT NULL,
        evidence TEXT NOT NULL DEFAULT '{}',
        created TEXT NOT NULL,
        UNIQUE (rule_id, scene_id)
    );
    CREATE INDEX alerts_by_site ON alerts (site_id, acquired);
    CREATE TABLE alert_deliveries (
        alert_id INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
        channel TEXT NOT NULL CHECK (channel IN ('webhook', 'email')),
        attempts INTEGER NOT NULL DEFAULT 0,
        delivered TEXT,
        error TEXT,
        PRIMARY KEY (alert_id, channel)
    );
    CREATE TABLE notify_targets (
        channel TEXT PRIMARY KEY CHECK (channel IN ('webhook', 'email')),
        config TEXT NOT NULL,
        configured TEXT NOT NULL
    );
    CREATE TABLE monitor_files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        status TEXT NOT NULL,
        scene_id INTEGER REFERENCES scenes(id) ON DELETE SET NULL,
        message TEXT,
        checked TEXT NOT NULL
    );
    """,
    """
    -- The analyst's own records. Reviews copy what they judged (change rows are replaced by every
    -- analysis, and SQLite reuses their ids), so change_id is cleared when its row goes.
    CREATE TABLE annotations (
        id INTEGER PRIMARY KEY,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        geometry_wkt TEXT NOT NULL,
        label TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        scene_id INTEGER REFERENCES scenes(id) ON DELETE SET NULL,
        acquired TEXT,
        author TEXT,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE INDEX annotations_by_site ON annotations (site_id);
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        change_id INTEGER REFERENCES changes(id) ON DELETE SET NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('confirmed', 'rejected')),
        reason TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL,
        geometry_wkt TEXT NOT NULL,
        date_from TEXT NOT NULL,
        date_to TEXT NOT NULL,
        after_scene_id INTEGER REFERENCES scenes(id) ON DELETE SET NULL,
        detector TEXT NOT NULL,
        reviewer TEXT,
        created TEXT NOT NULL
    );
    CREATE INDEX reviews_by_site ON reviews (site_id, created);
    CREATE INDEX reviews_by_change ON reviews (change_id);
    CREATE TABLE site_events (
        id INTEGER PRIMARY KEY,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        happened TEXT NOT NULL,
        label TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL
    );
    CREATE INDEX site_events_by_site ON site_events (site_id, happened);
    """,
    """
    -- Alerts an analyst has acknowledged in the workbench (seen and dealt with). The alert stays as it was.
    CREATE TABLE alert_acks (
        alert_id INTEGER PRIMARY KEY REFERENCES alerts(id) ON DELETE CASCADE,
        acknowledged TEXT NOT NULL
    );
    """,
    """
    -- STAC items the monitor failed to ingest for a site, searched for again at their own time on
    -- later passes until they are ingested (the row goes) or have failed too often (the row stays).
    CREATE TABLE monitor_stac_failures (
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        source TEXT NOT NULL,
        acquired TEXT NOT NULL,
        message TEXT NOT NULL,
        tries INTEGER NOT NULL,
        last_tried TEXT NOT NULL,
        PRIMARY KEY (site_id, source)
    );
    """,
    """
    -- Where the monitor looks for each site's new scenes, saved with the site: a STAC API (target: its
    -- URL, with the collections searched and the extra hosts its assets may come from, JSON lists) or a
    -- watched folder (target: its absolute path).
    CREATE TABLE site_sources (
        id INTEGER PRIMARY KEY,
        site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('stac', 'folder')),
        target TEXT NOT NULL,
        collections TEXT NOT NULL DEFAULT '[]',
        allow_hosts TEXT NOT NULL DEFAULT '[]',
        created TEXT NOT NULL,
        UNIQUE (site_id, kind, target)
    );
    -- The STAC API a failed item was searched on, so that it is searched for again on that API only
    -- (NULL: recorded before sites had their own sources, when a pass searched a single API).
    ALTER TABLE monitor_stac_failures ADD COLUMN api TEXT;
    """,
)
