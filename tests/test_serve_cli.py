"""``sitewatch serve`` as a user runs it: refused off loopback without a token (one line, exit 1);
otherwise it prints its URL on one line and serves the workbench until stopped, file routes closed to
raw ``..`` requests that no HTTP client would send."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sitewatch.sites import from_bbox, new_site
from sitewatch.workspace import Workspace
from tests.conftest import run_sitewatch

START_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with one site and no imagery."""
    root = tmp_path_factory.mktemp("serve") / "ws"
    with Workspace.create(root) as ws:
        ws.catalog.add_site(new_site("plant", from_bbox("38.348,28.098,38.352,28.101")))
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raw_request(port: int, request: bytes) -> bytes:
    """Send REQUEST as it is (no client normalises its path) and return the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class Server:
    """A running ``sitewatch serve`` and the line it printed."""

    def __init__(self, root: Path, *args: str) -> None:
        self.port = free_port()
        exe = Path(sys.executable).parent / "sitewatch"
        env = {k: v for k, v in os.environ.items() if k != "SITEWATCH_TOKEN"}
        self.process = subprocess.Popen(
            [str(exe), "serve", "-w", str(root), "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.line = ""

    def wait(self, headers: dict[str, str] | None = None) -> httpx.Response:
        """Poll / until the server answers (bounded); read the line it printed first."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited {self.process.returncode}: {self.process.stderr.read()}")  # type: ignore[union-attr]
            try:
                response = httpx.get(f"http://127.0.0.1:{self.port}/", headers=headers, timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.line = self.process.stdout.readline().rstrip("\n")  # type: ignore[union-attr]
        return response

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def serve(root: Path) -> Iterator[Callable[..., Server]]:
    """Start ``sitewatch serve`` with extra arguments; every server started is stopped at the end."""
    started: list[Server] = []

    def start(*args: str) -> Server:
        started.append(Server(root, *args))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def test_serving_beyond_loopback_without_a_token_is_refused(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SITEWATCH_TOKEN", raising=False)
    result = run_sitewatch("serve", "--host", "0.0.0.0", "--port", str(free_port()), workspace=root, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: --host 0.0.0.0: serving beyond this machine needs a token: pass --token or set SITEWATCH_TOKEN"
    ]


def test_serve_prints_its_url_and_serves_the_workbench(root: Path, serve: Callable[..., Server]) -> None:
    server = serve()
    page = server.wait()
    assert server.line == f"sitewatch: serving {root.resolve()} at http://127.0.0.1:{server.port}/"
    assert page.status_code == 200 and 'id="page-data"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert httpx.get(f"http://127.0.0.1:{server.port}/api/sites").json()[0]["name"] == "plant"
    for path in (
        b"/static/../../../pyproject.toml",
        b"/static/%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
        b"/reports/../catalog.sqlite",
    ):
        answer = raw_request(server.port, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status = answer.split(b" ", 2)[1]
        assert status in (b"400", b"404"), (path, answer[:200])
        assert b"[project]" not in answer and b"SQLite format" not in answer


def test_serve_with_a_token_prints_the_login_url_and_needs_it(serve: Callable[..., Server]) -> None:
    server = serve("--token", "s3cret token")
    assert server.wait().status_code == 401
    assert server.line.endswith(f"at http://127.0.0.1:{server.port}/?token=s3cret%20token")
    bearer = {"authorization": "Bearer s3cret token"}
    assert httpx.get(f"http://127.0.0.1:{server.port}/api/sites", headers=bearer).status_code == 200
    login = httpx.get(f"http://127.0.0.1:{server.port}/?token=s3cret%20token", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/"
