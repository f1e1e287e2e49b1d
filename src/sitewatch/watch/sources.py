"""Each site's own monitoring sources: a STAC API searched over the site, or a watched folder.

Saved with the site, they let a long-running ``sitewatch monitor`` run without flags and let sites be
watched from different places: every pass polls each site's sources for that site only (see
:mod:`sitewatch.watch.monitor`). A source is checked when it is saved, by the rules the same source
meets when named on the command line: a STAC API must be an http(s) URL that passes
:func:`~sitewatch.io.stac.check_url` under the policy ``--stac`` gets (its own host, which the user
names and which may therefore be a loopback or private one, plus the allowed hosts); a folder must
exist, and is stored as its absolute path, so the monitor finds it from any working folder.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sitewatch.catalog.models import SiteSource
from sitewatch.errors import AlreadyExists, InputError
from sitewatch.io.stac import HostPolicy, check_url
from sitewatch.workspace import Workspace


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _host(text: str) -> str:
    """TEXT as an allowed host: a bare name or IP literal, or ``.domain`` for its subdomains."""
    host = text.strip()
    bare = host.strip("[]")
    if not bare or any(c in host for c in "/@?# \t") or (":" in bare and not _is_ip(bare)):
        raise InputError(text, "not a host name (such as data.example.com, or .example.com for its subdomains)")
    return host


def _collection(text: str) -> str:
    name = text.strip()
    if not name:
        raise InputError(repr(text), "a STAC collection id cannot be empty")
    return name


def _stac(ws: Workspace, site_id: int, url: str, collections: Sequence[str], allow_hosts: Sequence[str]) -> SiteSource:
    """A STAC source of site SITE_ID, checked as ``--stac URL`` is."""
    hosts = tuple(dict.fromkeys(_host(h) for h in allow_hosts))
    check_url(url, HostPolicy.for_url(url, hosts + ws.settings.allowed_hosts))
    names = tuple(dict.fromkeys(_collection(c) for c in collections))
    return SiteSource(site_id, "stac", url, datetime.now(UTC), names, hosts)


def _folder(site_id: int, folder: str | os.PathLike[str]) -> SiteSource:
    """A folder source of site SITE_ID: an existing folder, by its absolute path."""
    path = Path(folder).expanduser()
    if not path.exists():
        raise InputError(folder, "no such folder")
    if not path.is_dir():
        raise InputError(folder, "not a folder")
    return SiteSource(site_id, "folder", str(path.resolve()), datetime.now(UTC))


def add_source(
    ws: Workspace,
    site_name: str,
    *,
    stac: str | None = None,
    collections: Sequence[str] = (),
    allow_hosts: Sequence[str] = (),
    folder: str | os.PathLike[str] | None = None,
) -> SiteSource:
    """Save a STAC API (with COLLECTIONS, none for all, and ALLOW_HOSTS its assets may come from) or a
    FOLDER as one of SITE_NAME's monitoring sources; every check runs before anything is written.

    Raises:
        InputError: If not exactly one of STAC and FOLDER is given, collections or hosts come with a
            folder, the URL breaks the host rules, the folder is missing, or the site has it already.
        NotFound: If the site does not exist.
    """
    if folder is not None and (collections or allow_hosts):
        raise InputError(folder, "--collection and --allow-host go with --stac, not with --folder")
    site = ws.catalog.site(site_name)
    if stac is not None and folder is None:
        source = _stac(ws, site.id or 0, stac, collections, allow_hosts)
    elif folder is not None and stac is None:
        source = _folder(site.id or 0, folder)
    else:
        raise InputError("site source", "give exactly one of --stac URL or --folder DIR")
    try:
        return ws.catalog.add_site_source(source)
    except AlreadyExists as exc:
        raise InputError(source.target, f"already a {source.kind} source of site {site.name!r}") from exc


def list_sources(ws: Workspace, site_name: str | None = None) -> list[SiteSource]:
    """SITE_NAME's saved sources in the order they were added; every site's, by site name, if None.

    Raises:
        NotFound: If SITE_NAME does not exist.
    """
    return ws.catalog.site_sources(None if site_name is None else ws.catalog.site(site_name))


def remove_source(ws: Workspace, site_name: str, source_id: int) -> SiteSource:
    """Remove SITE_NAME's source SOURCE_ID; returns it as it was. Failed STAC items stay recorded.

    Raises:
        NotFound: If the site does not exist, or has no source with that id.
    """
    return ws.catalog.remove_site_source(ws.catalog.site(site_name), source_id)


def source_record(source: SiteSource, site: str) -> dict[str, Any]:
    """A saved source as JSON, with its site's name (the CLI's ``--json`` and the workbench)."""
    return {
        "id": source.id,
        "site": site,
        "kind": source.kind,
        "target": source.target,
        "collections": list(source.collections),
        "allow_hosts": list(source.allow_hosts),
        "created": source.created.isoformat(),
    }
