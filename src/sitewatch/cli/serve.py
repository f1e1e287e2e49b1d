"""``sitewatch serve``: the analyst's workbench in a browser, over one workspace (one process)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from sitewatch.cli.common import WorkspaceOption, workspace_path


def server_url(host: str, port: int, token: str | None) -> str:
    """The URL to open: the host as bound (IPv6 in brackets), with the token query that logs a browser in."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    query = f"?token={quote(token, safe='')}" if token else ""
    return f"http://{name}:{port}/{query}"


def serve(
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on. Anything but loopback (127.0.0.1, ::1) needs a token."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8750,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="SITEWATCH_TOKEN",
            help="Secret every request must carry (Bearer header, or ?token= once in a browser). "
            "Default: $SITEWATCH_TOKEN; none on loopback.",
            show_default=False,
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host", help="Another name clients reach the server by, e.g. behind a proxy (repeatable)."
        ),
    ] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Serve the workbench: the watchlist, each site's timeline and activity, before/after compare with
    the changes between two images, search, and the alert inbox. Listens on 127.0.0.1 unless told
    otherwise; any other address is refused without a token (nothing is served to the network open)."""
    import uvicorn

    from sitewatch.web.app import create_app

    root = workspace_path(workspace).resolve()
    app = create_app(root, token=token, host=host, allowed_hosts=allow_host or ())
    typer.echo(f"sitewatch: serving {root} at {server_url(host, port, token)}")
    uvicorn.run(app, host=host.strip("[]"), port=port, log_level="warning", access_log=False)


def register(app: typer.Typer) -> None:
    """Add ``serve``."""
    app.command()(serve)
