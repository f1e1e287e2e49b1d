"""Reviews: an analyst's verdict on a detected change (confirmed, or rejected with the reason), and the
precision those verdicts give.

Every analysis replaces a site's change rows, and SQLite hands the new rows ids the old ones had, so a
review cannot point at a change by id. It keeps a copy of what it judged instead, and is matched to
each current change by kind, date (the first image with the change: same time, or same scene) and
outline (IoU at least MIN_IOU in the site grid): a verdict given once holds after the site is analyzed
again, and follows its change even if that change's outline moved a little. A change may be reviewed
again; the latest matching review is its verdict, the earlier ones its history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from shlex import quote
from typing import Any

from sitewatch.catalog.models import Change, Review
from sitewatch.errors import InputError, NotFound
from sitewatch.review.text import check_name, check_text
from sitewatch.workspace import Workspace

VERDICTS = ("confirmed", "rejected")
MAX_REASON = 1000
MIN_IOU = 0.5


def review_change(
    ws: Workspace,
    site_name: str,
    change_id: int,
    verdict: str,
    reason: str = "",
    *,
    reviewer: str | None = None,
) -> Review:
    """Record a verdict on one of the site's current changes; a rejection needs its REASON.

    Raises:
        NotFound: If there is no such site, or the site has no such change now.
        InputError: If the verdict is unknown, the reason missing (rejected), too long or not text.
    """
    if verdict not in VERDICTS:
        raise InputError("verdict", f"{verdict!r} is not one of {', '.join(VERDICTS)}")
    why = check_text(reason, "reason", MAX_REASON).strip()
    if verdict == "rejected" and not why:
        raise InputError("reason", "a rejection needs a reason (shadow, misregistration, vehicles, ...)")
    site = ws.catalog.site(site_name)
    change = next((c for c in ws.catalog.changes(site) if c.id == change_id), None)
    if change is None:
        raise NotFound(f"site {site_name!r} has no change {change_id} (see `sitewatch review list {quote(site_name)}`)")
    scene_of = {obs.id: obs.scene_id for obs in ws.catalog.observations(site)}
    return ws.catalog.add_review(
        Review(
            site_id=site.id or 0,
            verdict=verdict,
            reason=why,
            kind=change.kind,
            geometry=change.geometry,
            date_from=change.date_from,
            date_to=change.date_to,
            after_scene_id=scene_of.get(change.after_id),
            detector=change.detector,
            reviewer=check_name(reviewer, "reviewer"),
            created=datetime.now(UTC),
            change_id=change.id,
        )
    )


@dataclass(frozen=True)
class ReviewedChange:
    """A current change and its verdict (None: not reviewed)."""

    change: Change
    review: Review | None


def reviewed_changes(ws: Workspace, site_name: str) -> list[ReviewedChange]:
    """Every current change of the site with the latest review that matches it, in the catalog's order.

    Raises:
        NotFound: If there is no such site.
    """
    site = ws.catalog.site(site_name)
    scene_of = {obs.id: obs.scene_id for obs in ws.catalog.observations(site)}
    reviews = ws.catalog.reviews(site)  # oldest first: a later match replaces an earlier one
    result = []
    for change in ws.catalog.changes(site):
        after_scene = scene_of.get(change.after_id)
        latest = None
        for review in reviews:
            same_image = review.date_to == change.date_to or (
                review.after_scene_id is not None and review.after_scene_id == after_scene
            )
            if review.kind == change.kind and same_image and _iou(review, change) >= MIN_IOU:
                latest = review
        result.append(ReviewedChange(change, latest))
    return result


def current_reviews(ws: Workspace, site_name: str) -> dict[int, Review]:
    """Current change id -> its verdict, for the site's reviewed changes.

    Raises:
        NotFound: If there is no such site.
    """
    return {
        item.change.id: item.review
        for item in reviewed_changes(ws, site_name)
        if item.review is not None and item.change.id is not None
    }


def list_reviews(ws: Workspace, site_name: str) -> list[Review]:
    """Every review of the site's changes, oldest first, whether or not its change is still found."""
    return ws.catalog.reviews(ws.catalog.site(site_name))


def remove_review(ws: Workspace, review_id: int) -> Review:
    """Withdraw a review (a verdict given by mistake); an earlier review of its change applies again.

    Raises:
        NotFound: If there is no such review.
    """
    return ws.catalog.remove_review(review_id)


@dataclass(frozen=True)
class ReviewPrecision:
    """How a site's current changes were judged: the analyst's precision on what was reviewed.

    This is not recall: changes the detector missed are not counted anywhere.
    """

    site: str
    confirmed: int
    rejected: int
    unreviewed: int
    changes: int

    @property
    def precision(self) -> float | None:
        """Confirmed / reviewed; None when nothing is reviewed."""
        reviewed = self.confirmed + self.rejected
        return self.confirmed / reviewed if reviewed else None

    @classmethod
    def total(cls, rows: Sequence[ReviewPrecision], name: str = "all sites") -> ReviewPrecision:
        """ROWS summed (changes, not sites, weigh in the precision)."""
        return cls(
            name,
            sum(r.confirmed for r in rows),
            sum(r.rejected for r in rows),
            sum(r.unreviewed for r in rows),
            sum(r.changes for r in rows),
        )

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON."""
        return {
            "site": self.site,
            "changes": self.changes,
            "confirmed": self.confirmed,
            "rejected": self.rejected,
            "unreviewed": self.unreviewed,
            "precision": self.precision,
        }


def review_precision(ws: Workspace, site_names: Sequence[str] | None = None) -> list[ReviewPrecision]:
    """The review figures of each site named (default: every site), by name as given.

    Raises:
        NotFound: If a site named does not exist.
    """
    names = list(site_names) if site_names is not None else [site.name for site in ws.catalog.sites()]
    rows = []
    for name in names:
        items = reviewed_changes(ws, name)
        verdicts = [item.review.verdict for item in items if item.review is not None]
        confirmed, rejected = verdicts.count("confirmed"), verdicts.count("rejected")
        rows.append(ReviewPrecision(name, confirmed, rejected, len(items) - confirmed - rejected, len(items)))
    return rows


def _iou(review: Review, change: Change) -> float:
    """Intersection over union of a reviewed outline and a change's (both in the site grid)."""
    if not review.geometry.intersects(change.geometry):
        return 0.0
    overlap = review.geometry.intersection(change.geometry).area
    union = review.geometry.area + change.geometry.area - overlap
    return float(overlap / union) if union > 0 else 0.0
