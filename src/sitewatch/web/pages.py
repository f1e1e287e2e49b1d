"""The workbench's HTML pages and the workspace files it shows (reports, evidence chips).

Pages are thin shells: the template lays out empty panels and carries the page's settings in a
``<script type="application/json" id="page-data">`` block (the Content-Security-Policy allows no
inline script); the page's own module in ``static/`` reads it, fetches the JSON API and fills
the panels. Every page load gets the CSRF cookie its script sends back on writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from sitewatch import __version__
from sitewatch.errors import NotFound
from sitewatch.web import serialise
from sitewatch.web.context import security, workspace
from sitewatch.web.security import FILE_CSP, inside, set_csrf_cookie

TEMPLATES = Path(__file__).parent / "templates"
#: Workspace files the file route serves, by suffix; anything else is not found.
FILE_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".geojson": "application/geo+json",
    ".json": "application/json",
}

templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined)
)
router = APIRouter()


def _page(
    request: Request,
    page: str,
    title: str,
    *,
    site: str | None = None,
    data: dict[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """Render PAGE's shell with its page data, and give it the CSRF cookie."""
    root = Path(request.app.state.workspace_root)
    context = {
        "page": page,
        "title": title,
        "site": site,
        "site_urls": None
        if site is None
        else {view or "site": serialise.site_url(site, view) for view in ("", "compare", "search")},
        "workspace": str(root),
        "workspace_name": root.name,
        "version": __version__,
        "data": {"page": page, "site": site, **(data or {})},
    }
    response = templates.TemplateResponse(request, f"{page}.html", context, status_code=status)
    set_csrf_cookie(request, response, security(request))
    return response


def _site_page(request: Request, name: str, page: str, title: str, data: dict[str, Any] | None = None) -> HTMLResponse:
    """A page of one site, or a 404 page that lists the sites there are."""
    with workspace(request) as ws:
        try:
            site = ws.catalog.site(name)
        except NotFound as exc:
            return _page(request, "missing", "Not found", data={"message": str(exc)}, status=404)
    return _page(request, page, f"{title} · {site.name}", site=site.name, data=data)


@router.get("/", response_class=HTMLResponse)
def watchlist(request: Request) -> HTMLResponse:
    """Every site on a map and in a table, with its latest image, open alerts and activity."""
    return _page(request, "watchlist", "Watchlist")


@router.get("/alerts", response_class=HTMLResponse)
def alerts(request: Request) -> HTMLResponse:
    """The alert inbox, newest first."""
    return _page(request, "alerts", "Alerts")


@router.get("/sites/{name:path}/compare", response_class=HTMLResponse)
def compare(request: Request, name: str) -> HTMLResponse:
    """Two images of a site side by side (or swiped), with the changes between them."""
    return _site_page(request, name, "compare", "Compare", {"kind_colours": serialise.kind_colours()})


@router.get("/sites/{name:path}/search", response_class=HTMLResponse)
def search(request: Request, name: str) -> HTMLResponse:
    """Find objects on a site by colour and size."""
    from sitewatch.detect.colour import COLOURS

    return _site_page(request, name, "search", "Search", {"colours": list(COLOURS)})


# After the site's other pages: a site name may hold a slash, so this would match them too.
@router.get("/sites/{name:path}", response_class=HTMLResponse)
def site(request: Request, name: str) -> HTMLResponse:
    """A site's timeline of images, activity chart, events and detections."""
    return _site_page(request, name, "site", "Site")


@router.get("/reports/{path:path}")
def report_file(request: Request, path: str) -> FileResponse:
    """A file the workspace's reports folder holds (a site report, a search's evidence chip).

    PATH must stay inside that folder (:func:`sitewatch.web.security.inside`); a report is shown
    with a policy that lets it use its inline styles and images but run nothing.

    Raises:
        NotFound: If there is no such file there, or it is not of a type served.
    """
    with workspace(request) as ws:
        base = ws.reports
    target = inside(base, path)
    media = FILE_TYPES.get(target.suffix.lower())
    if media is None:
        raise NotFound(f"no file {path!r} here")
    headers = {"content-security-policy": FILE_CSP} if target.suffix.lower() == ".html" else {}
    return FileResponse(target, media_type=media, headers=headers)
