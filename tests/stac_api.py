"""A real STAC API on loopback for the tests: stac-fastapi-geoparquet under uvicorn, in a subprocess.

The server is the real thing, so the monitor's item search (footprint bbox, datetime after a site's
latest image) is answered by the server's own filtering, over HTTP, through sitewatch's guarded
client. The demo scenes are served by a plain static file server on loopback; the items' asset
hrefs point there, since a remote STAC document may not name local files.

How stac-fastapi-geoparquet is fed, and why it is restarted to publish a scene:

- it serves one stac-geoparquet file, named by ``STAC_FASTAPI_GEOPARQUET_HREF`` (its pydantic
  settings read the environment); rustac writes that file from plain item dicts;
- it derives the collections from that file once, when the app is created, and never re-reads
  them ("nothing about them changes unless the file itself is replaced"). So :meth:`StacApi.publish`
  writes a new file holding every item published so far and restarts the server on the same port:
  no test relies on DuckDB re-reading a file that is being replaced under it;
- its DuckDB needs the ``spatial`` and ``icu`` extensions and would download them, which cannot
  work offline. rustac-duckdb-extensions ships them, built for one DuckDB release, so it must be
  pinned with the rustac that bundles that release (rustac 0.9.9 and rustac-duckdb-extensions
  1.5.1.post0 both use DuckDB 1.5.1). rustac's own detection of that package has no effect (its
  Python ``__init__`` runs after the native constructor), so :func:`duckdb_client` passes the folder;
- stac-fastapi-geoparquet 0.0.7 imports ``stac_fastapi.extensions.core.fields``, gone from
  stac-fastapi 6.3 on, so stac-fastapi-api, -extensions and -types are held at 6.2; and it hands
  ``FastAPI()`` keyword arguments to keep in ``app.extra``, which FastAPI 0.165 no longer accepts,
  so :func:`server_app` gives it a FastAPI subclass that does.

No ``SITEWATCH_ALLOWED_HOSTS`` is needed: sitewatch lets the host of the API the user names be a
loopback one, and the assets are on that same host (another loopback name would be refused
whatever the allowed hosts say: only named hosts may be private).

Items are written newest first, as many STAC APIs sort a search by default, so a client that takes
the answer's order for time order is caught out.

The server runs in a subprocess so that a hang can be killed; readiness is polled on ``/`` with a
deadline, and :meth:`StacApi.stop` terminates it (then kills it if it does not go).
"""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import PROXY_VARIABLES

if TYPE_CHECKING:
    from fastapi import FastAPI
    from rustac import DuckdbClient

    from sitewatch.demo.generator import DemoScene, DemoSite

LOOPBACK = "127.0.0.1"
COLLECTION = "sitewatch-demo"
#: How long the server may take to answer its landing page after a start.
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
REPO_ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def demo_api(truth: DemoSite, folder: Path) -> Iterator[StacApi]:
    """A STAC API over the demo's scenes (none published yet), or a skip saying why it cannot run here."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with StacApi(truth, folder) as server:
        yield server


def unavailable() -> str | None:
    """Why the real server cannot run here (a reason to skip), or None when it can."""
    try:
        import rustac
        import rustac_duckdb_extensions  # noqa: F401 (only whether it imports)
        import stac_fastapi.geoparquet.api  # noqa: F401
    except ImportError as exc:
        return (
            f"stac-fastapi-geoparquet cannot be imported ({exc}): it needs rustac, rustac-duckdb-extensions and "
            "stac-fastapi-api, -extensions and -types 6.2 (6.3 on dropped stac_fastapi.extensions.core.fields)"
        )
    try:
        duckdb_client()
    except rustac.RustacError as exc:
        return (
            "rustac's DuckDB cannot load the spatial extension from rustac-duckdb-extensions offline "
            f"(pin rustac==0.9.9 with rustac-duckdb-extensions==1.5.1.post0): {' '.join(str(exc).split())[:200]}"
        )
    return None


def duckdb_client() -> DuckdbClient:
    """An in-memory DuckDB with the extensions rustac-duckdb-extensions ships, never downloaded."""
    import rustac
    import rustac_duckdb_extensions

    return rustac.DuckdbClient(
        extension_directory=rustac_duckdb_extensions.extension_directory(), install_extensions=False
    )


def server_app() -> FastAPI:
    """The app uvicorn runs in the server subprocess (``--factory``): settings from the environment,
    DuckDB extensions from rustac-duckdb-extensions, never downloaded."""
    import stac_fastapi.geoparquet.api as geoparquet
    from fastapi import FastAPI
    from stac_fastapi.geoparquet.settings import Settings

    class AppWithExtra(FastAPI):
        """FastAPI as stac-fastapi-geoparquet 0.0.7 calls it: what the app needs at startup passed as
        keyword arguments and kept in ``extra``, which FastAPI 0.165 no longer does."""

        def __init__(self, *, settings: Any, collections: Any, duckdb_client: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.extra = {"settings": settings, "collections": collections, "duckdb_client": duckdb_client}

    geoparquet.FastAPI = AppWithExtra  # type: ignore[misc]  # this process runs only the server
    settings = Settings(
        stac_fastapi_landing_id="sitewatch-test-api",
        stac_fastapi_title="sitewatch test STAC API",
        stac_fastapi_description="Demo scenes for sitewatch's monitor tests",
    )
    app: FastAPI = geoparquet.create(settings, duckdb_client()).app
    return app


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class _FileServer(http.server.ThreadingHTTPServer):
    fetched: list[tuple[str, int]]


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    server: _FileServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.fetched.append((self.path, int(code)))


@contextmanager
def file_server(folder: Path, fetched: list[tuple[str, int]] | None = None) -> Iterator[str]:
    """Serve FOLDER over http on loopback (a thread); yields the base URL, ending in ``/``. FETCHED,
    if given, gets the path and HTTP status of every request answered."""
    server = _FileServer((LOOPBACK, 0), partial(_QuietFiles, directory=str(folder)))
    server.fetched = [] if fetched is None else fetched
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(STOP_TIMEOUT_S)


def stac_item(truth: DemoSite, scene: DemoScene, href: str) -> dict[str, Any]:
    """SCENE as a STAC item: WGS84 footprint and bbox, datetime, gsd, projection, an RGB data asset."""
    from shapely.geometry import box, mapping

    from sitewatch.grid import to_crs

    left, top = truth.transform @ (0, 0)
    right, bottom = truth.transform @ (truth.width, truth.height)
    footprint = to_crs(box(left, bottom, right, top), f"EPSG:{truth.epsg}", "EPSG:4326")
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
        ],
        "id": scene.path.stem,
        "collection": COLLECTION,
        "geometry": mapping(footprint),
        "bbox": list(footprint.bounds),
        "properties": {
            "datetime": scene.acquired.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "gsd": truth.gsd,
            "proj:epsg": truth.epsg,
            "platform": "sw-sim",
            "license": "CC0-1.0",
        },
        "links": [],
        "assets": {
            "image": {
                "href": href,
                "type": "image/tiff; application=geotiff",
                "roles": ["data"],
                "eo:bands": [{"name": band, "common_name": band} for band in ("red", "green", "blue")],
            }
        },
    }


class StacApi:
    """stac-fastapi-geoparquet on a fixed loopback port, serving the demo scenes published so far.

    Use as a context manager (the server and the file server stop on exit). Scenes must lie in one
    folder, which is what the file server serves.
    """

    def __init__(self, truth: DemoSite, folder: Path) -> None:
        self.truth = truth
        self.folder = folder  # the parquet files and the server's log
        self.port = free_port()
        self.published: list[DemoScene] = []
        self.fetched: list[tuple[str, int]] = []  # (path, HTTP status) of every asset request, in order
        self._others: list[dict[str, Any]] = []
        self._files = file_server(truth.scenes[0].path.parent, self.fetched)
        self._assets = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._generation = 0

    @property
    def url(self) -> str:
        """The API's landing page."""
        return f"http://{LOOPBACK}:{self.port}/"

    def __enter__(self) -> StacApi:
        self._assets = self._files.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self._files.__exit__(None, None, None)

    def asset_url(self, name: str) -> str:
        """Where the file server serves file NAME of the scenes' folder."""
        return self._assets + name

    def publish(self, scenes: Sequence[DemoScene], others: Sequence[dict[str, Any]] = ()) -> None:
        """Add SCENES (and OTHERS, items as they are) to the catalog: a new stac-geoparquet file of
        every item published so far, newest first, and the server restarted on it (see the module
        docstring)."""
        import rustac

        self.published.extend(scenes)
        self._others.extend(others)
        items = [stac_item(self.truth, scene, self.asset_url(scene.path.name)) for scene in self.published]
        items = sorted([*items, *self._others], key=lambda item: item["properties"]["datetime"], reverse=True)
        self._generation += 1
        parquet = self.folder / f"items-{self._generation}.parquet"
        rustac.write_sync(str(parquet), items)
        self.stop()
        self._start(parquet)

    def _start(self, parquet: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
        env["STAC_FASTAPI_GEOPARQUET_HREF"] = str(parquet)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        log_path = self.folder / f"server-{self._generation}.log"
        command = [sys.executable, "-m", "uvicorn", "tests.stac_api:server_app", "--factory"]
        command += ["--host", LOOPBACK, "--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(log_path)

    def _wait_ready(self, log_path: Path) -> None:
        """Poll the landing page until it answers 200; fail with the server's log if it dies or is late."""
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the STAC API server exited ({self._process.returncode}):\n{log_path.read_text()}")
            try:
                conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2.0)
                try:
                    conn.request("GET", "/")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        late = f"the STAC API server did not answer within {READY_TIMEOUT_S:.0f} s"
        raise RuntimeError(f"{late}:\n{log_path.read_text()}")

    def stop(self) -> None:
        """Terminate the server (kill it if it does not stop in time)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
