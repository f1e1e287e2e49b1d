"""What a request handler gets from the app: the workspace, the security settings, the activity cache.

The catalog is SQLite, whose connections belong to the thread that opened them, and FastAPI may run
a dependency's setup and teardown on other threads than the handler, so handlers open the workspace
themselves with :func:`workspace` (one connection per request, closed at the end).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from fastapi import Request

from sitewatch.web.cache import ActivityCache
from sitewatch.web.security import Security
from sitewatch.workspace import Workspace


@contextmanager
def workspace(request: Request) -> Iterator[Workspace]:
    """The app's workspace, open for this request."""
    ws = Workspace.open(Path(request.app.state.workspace_root))
    try:
        yield ws
    finally:
        ws.close()


def security(request: Request) -> Security:
    """The app's security settings."""
    return cast(Security, request.app.state.security)


def activity_cache(request: Request) -> ActivityCache:
    """The app's activity cache."""
    return cast(ActivityCache, request.app.state.activity_cache)
