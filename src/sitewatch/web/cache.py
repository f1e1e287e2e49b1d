"""The activity of each site, computed once per state of what it is computed from.

:func:`sitewatch.activity.site_activity` reads every usable observation (seconds per site), and
the watchlist draws a sparkline per site, so the server keeps each site's result in memory, keyed
by a fingerprint of its inputs: the site's zones, its observations (file, alignment, flags), its
stored changes (persistent ones are left out of the index) and its detector passes (the counts).
Writing a review, an annotation or an event changes none of these, so it does not cost a
recomputation; re-analysing a site does.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from sitewatch.activity import SiteActivity, site_activity
from sitewatch.workspace import Workspace

#: Sites' results kept (least recently used dropped first).
MAX_SITES = 64


def fingerprint(ws: Workspace, site_name: str) -> str:
    """A digest that changes whenever anything the site's activity is computed from does.

    Raises:
        NotFound: If there is no such site.
    """
    site = ws.catalog.site(site_name)
    parts: list[object] = [site.id, site.base_gsd, [(z.name, z.geometry.wkt) for z in site.zones]]
    parts += [(o.id, str(o.path), o.align_status, o.flags, o.valid_fraction) for o in ws.catalog.observations(site)]
    parts += [(c.id, c.persistence) for c in ws.catalog.changes(site)]
    parts += [(r.id, r.model, r.created.isoformat()) for r in ws.catalog.detection_runs(site)]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


class ActivityCache:
    """Each site's :class:`SiteActivity`, by (site, fingerprint); safe to share between threads.

    Two requests for the same site wait for one computation rather than making two.
    """

    def __init__(self, size: int = MAX_SITES) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str], SiteActivity] = OrderedDict()
        self._busy: dict[tuple[str, str], threading.Lock] = {}

    def peek(self, ws: Workspace, site_name: str) -> SiteActivity | None:
        """The site's activity if it is already known for its current state, else None (never computes)."""
        key = (site_name, fingerprint(ws, site_name))
        with self._lock:
            return self._items.get(key)

    def get(self, ws: Workspace, site_name: str) -> SiteActivity:
        """The site's activity, computed now if its inputs changed since (reads only: no alignment)."""
        key = (site_name, fingerprint(ws, site_name))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            busy = self._busy.setdefault(key, threading.Lock())
        with busy:
            with self._lock:
                known = self._items.get(key)
            if known is not None:
                return known
            try:
                activity = site_activity(ws, site_name, align=False)  # a view never changes the workspace
            except BaseException:
                with self._lock:
                    self._busy.pop(key, None)
                raise
            with self._lock:
                self._items[key] = activity
                self._busy.pop(key, None)
                for stale in [k for k in self._items if k[0] == site_name and k != key]:
                    del self._items[stale]
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            return activity
