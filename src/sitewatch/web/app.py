"""create_app(): the workbench as one FastAPI application over one workspace.

Routes: the JSON API (:mod:`sitewatch.web.api`), the pages and workspace files
(:mod:`sitewatch.web.pages`), map tiles (:mod:`sitewatch.web.tiles`) and the package's static
files, all behind :class:`sitewatch.web.security.Guard`. FastAPI's generated docs are off: they
load scripts from a CDN, which the policy (and an offline machine) refuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from sitewatch.errors import AlreadyExists, NotFound, SitewatchError, WorkspaceError
from sitewatch.web import api, pages, tiles
from sitewatch.web.cache import ActivityCache
from sitewatch.web.security import Guard, Security, refuse
from sitewatch.workspace import Workspace

STATIC = Path(__file__).parent / "static"


def create_app(
    workspace_root: Path,
    *,
    token: str | None = None,
    host: str = "127.0.0.1",
    allowed_hosts: Sequence[str] = (),
) -> FastAPI:
    """The workbench over the workspace in WORKSPACE_ROOT, for a server bound to HOST.

    Args:
        workspace_root: The workspace folder (it must be one).
        token: The secret every request must carry (see :mod:`sitewatch.web.security`); None
            serves without one, which only a loopback HOST may do.
        host: The address the server listens on: it decides whether a token is needed and which
            Host headers are answered.
        allowed_hosts: Further names clients reach the server by (a host name, a proxy's name).

    Raises:
        WorkspaceError: If WORKSPACE_ROOT is not a workspace.
        InputError: If HOST is not loopback and there is no token.
    """
    security = Security.for_bind(host, token, allowed_hosts)
    Workspace.open(workspace_root).close()  # refuse at start, not on the first request
    app = FastAPI(title="sitewatch", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workspace_root = workspace_root
    app.state.security = security
    app.state.activity_cache = ActivityCache()
    app.include_router(api.router)
    app.include_router(tiles.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(SitewatchError, _library_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(Guard, security=security)
    return app


async def _library_error(request: Request, exc: Exception) -> JSONResponse:
    """An error the library raised on purpose, as ``{"detail": its one line}``."""
    if isinstance(exc, NotFound):
        status = 404
    elif isinstance(exc, AlreadyExists):
        status = 409
    elif isinstance(exc, WorkspaceError):
        status = 500
    else:
        status = 400
    return refuse(status, str(exc))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A malformed parameter or body, as one line naming where and what (not FastAPI's list)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    parts = []
    for error in errors[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return refuse(422, "; ".join(parts) or "invalid request")
