"""The workbench's defences: bind and token rules, the Host check, CSRF (double submit and origin),
body and upload limits, file routes that cannot be walked out of (``..``, encoded, absolute, symbolic
links), response headers, and hostile names and labels kept as text."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sitewatch.errors import InputError, NotFound
from sitewatch.sites import from_bbox, new_site
from sitewatch.web.app import create_app
from sitewatch.web.security import (
    CSRF_COOKIE,
    CSRF_HEADER,
    MAX_JSON_BYTES,
    MAX_UPLOAD_BYTES,
    SESSION_COOKIE,
    Security,
    inside,
    is_loopback,
)
from sitewatch.workspace import Workspace

PLAIN = "plant"
HOSTILE = '<script>alert("x")</script> & co'
TOKEN = "correct-horse-battery-staple"
OUTLINE = "38.348,28.098,38.352,28.101"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with two sites and no imagery (one with a name made to break HTML), a report and
    a file outside the reports folder that nothing may serve."""
    root = tmp_path_factory.mktemp("websec") / "ws"
    with Workspace.create(root) as ws:
        ws.catalog.add_site(new_site(PLAIN, from_bbox(OUTLINE)))
        ws.catalog.add_site(new_site(HOSTILE, from_bbox(OUTLINE)))
        (ws.reports / "plant.html").write_text("<html><body><p style='color:red'>report</p></body></html>")
    (root / "secret.txt").write_text("SECRET outside the reports folder")
    (root / "reports" / "escape.txt").symlink_to(root / "secret.txt")
    (root / "reports" / "escape.html").symlink_to(root / "secret.txt")
    (root / "reports" / "outside").symlink_to(root, target_is_directory=True)
    return root


def browser(app: FastAPI) -> TestClient:
    """A client as a browser on loopback is after loading a page: it holds the CSRF cookie and sends it back."""
    client = TestClient(app, base_url="http://127.0.0.1:8750")
    assert client.get("/").status_code == 200
    client.headers[CSRF_HEADER] = client.cookies[CSRF_COOKIE]
    return client


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    with browser(create_app(root)) as client:
        yield client


def events(site: str = PLAIN) -> str:
    return f"/api/sites/{quote(site, safe='')}/events"


def raw_get(app: FastAPI, raw_path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET RAW_PATH exactly as a server hands it on: the path percent-decoded once, nothing normalised
    (HTTP clients remove ``..`` segments before sending; an attacker's need not)."""
    path, _, query = raw_path.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in {"host": "127.0.0.1:8750", **(headers or {})}.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8750),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


# --- where it listens, and who may ask --------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_anything_but_loopback_needs_a_token(root: Path, host: str) -> None:
    with pytest.raises(InputError, match="serving beyond this machine needs a token"):
        create_app(root, host=host)
    with pytest.raises(InputError, match="needs a token"):
        Security.for_bind(host, "   ")
    assert Security.for_bind(host, TOKEN).token == TOKEN


def test_loopback_is_open_without_a_token(root: Path) -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "localhost.example.org"))
    with TestClient(create_app(root), base_url="http://localhost:8750") as client:
        assert client.get("/api/sites").status_code == 200


def test_host_header_must_name_this_server(root: Path) -> None:
    app = create_app(root)
    with TestClient(app, base_url="http://127.0.0.1:8750") as client:
        for host in ("127.0.0.1:8750", "localhost:8750", "[::1]:8750", "LOCALHOST"):
            assert client.get("/api/sites", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8750", "127.0.0.1.evil.example", ""):
            response = client.get("/api/sites", headers={"host": host})
            assert response.status_code == 400 and "is not served here" in response.json()["detail"], host
    with TestClient(create_app(root, allowed_hosts=["workbench.lan"]), base_url="http://workbench.lan") as client:
        assert client.get("/api/sites").status_code == 200


def test_token_by_bearer_header_or_a_cookie_set_once_from_the_url(root: Path) -> None:
    app = create_app(root, token=TOKEN, host="0.0.0.0")
    with TestClient(app, base_url="http://192.168.1.20:8750", follow_redirects=False) as client:
        for path in ("/", "/api/sites", "/static/app.css", f"/sites/{PLAIN}", "/tiles/plant/1/0/0/0.png"):
            response = client.get(path)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", path
        assert client.get("/api/sites", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/sites", headers={"authorization": f"Basic {TOKEN}"}).status_code == 401
        assert client.get("/api/sites", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/alerts?token=wrong").status_code == 401
        login = client.get(f"/alerts?open=1&token={TOKEN}")
        assert login.status_code == 303 and login.headers["location"] == "/alerts?open=1"
        cookie = login.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        assert TOKEN not in cookie  # the cookie is derived from the token, not the token
        assert client.get("/alerts").status_code == 200  # the cookie now stands for the token
        assert client.get("/api/sites").status_code == 200
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, "forged")
        assert client.get("/api/sites").status_code == 401


# --- CSRF ----------------------------------------------------------------------------------------------


def test_writes_need_the_csrf_header_matching_the_cookie(client: TestClient) -> None:
    body = {"date": "2024-06-12", "label": "summit"}
    good = client.headers[CSRF_HEADER]
    assert client.post(events(), json=body, headers={CSRF_HEADER: ""}).status_code == 403
    del client.headers[CSRF_HEADER]
    response = client.post(events(), json=body)
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert client.post(events(), json=body, headers={CSRF_HEADER: "guess"}).status_code == 403
    cookie = client.cookies.pop(CSRF_COOKIE)
    assert client.post(events(), json=body, headers={CSRF_HEADER: good}).status_code == 403  # header without cookie
    client.cookies.set(CSRF_COOKIE, "made-up")
    assert client.post(events(), json=body, headers={CSRF_HEADER: "made-up"}).status_code == 403  # not the server's
    client.cookies.set(CSRF_COOKIE, cookie)
    created = client.post(events(), json=body, headers={CSRF_HEADER: good})
    assert created.status_code == 200
    assert client.delete(f"/api/events/{created.json()['id']}").status_code == 403
    assert client.delete(f"/api/events/{created.json()['id']}", headers={CSRF_HEADER: good}).status_code == 200


def test_writes_from_another_origin_or_as_a_form_are_refused(client: TestClient) -> None:
    body = {"date": "2024-06-12", "label": "summit"}
    for headers in (
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1:9999"},
        {"referer": "http://evil.example/page"},
    ):
        response = client.post(events(), json=body, headers=headers)
        assert response.status_code == 403 and "cross-origin" in response.json()["detail"], headers
    same = client.post(events(), json=body, headers={"origin": "http://127.0.0.1:8750"})
    assert same.status_code == 200
    client.delete(f"/api/events/{same.json()['id']}")
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        response = client.post(events(), content=json.dumps(body), headers={"content-type": kind})
        assert response.status_code == 415, kind
    geojson_elsewhere = client.post(
        events(), content=json.dumps(body), headers={"content-type": "application/geo+json"}
    )
    assert geojson_elsewhere.status_code == 415


# --- bodies and uploads --------------------------------------------------------------------------------


def test_uploads_are_read_up_to_their_limit_and_then_validated(client: TestClient) -> None:
    url = f"/api/sites/{PLAIN}/annotations/import"
    geojson = {"content-type": "application/geo+json"}
    too_big = b"{" + b" " * MAX_UPLOAD_BYTES + b"}"
    response = client.post(url, content=too_big, headers=geojson)
    assert response.status_code == 413 and "byte limit" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(MAX_UPLOAD_BYTES // 65536 + 2):
            yield b" " * 65536

    assert client.post(url, content=chunks(), headers=geojson).status_code == 413
    for bad in (b"not json", b'{"type": "FeatureCollection", "features": [{"type": "Feature"}]}', b"\xff\xfe"):
        response = client.post(url, content=bad, headers=geojson)
        detail = response.json()["detail"]
        assert response.status_code == 400 and "\n" not in detail and detail.startswith("upload"), detail
    assert client.get(f"/api/sites/{PLAIN}/annotations").json()["features"] == []  # all or nothing
    big_json = json.dumps({"date": "2024-06-12", "label": "x", "note": "n" * MAX_JSON_BYTES})
    response = client.post(events(), content=big_json, headers={"content-type": "application/json"})
    assert response.status_code == 413


# --- files ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_path",
    [
        "/static/../../../pyproject.toml",
        "/static/%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
        "/static/..%2f..%2f..%2fpyproject.toml",
        "/static/%2E%2E%2F%2E%2E%2Fweb%2Fapp.py",
        "/static//etc/passwd",
        "/static/vendor/../../app.py",
        "/reports/../catalog.sqlite",
        "/reports/%2e%2e/catalog.sqlite",
        "/reports/%2e%2e%2fsecret.txt",
        "/reports/..%5csecret.txt",
        "/reports//etc/passwd",
        "/reports/%2Fetc%2Fpasswd",
        "/reports/%252e%252e/secret.txt",
        "/reports/escape.txt",
        "/reports/escape.html",
        "/reports/outside/secret.txt",
        "/reports/outside/catalog.sqlite",
        "/reports/plant.html%00.png",
        "/tiles/plant/../../catalog.sqlite",
        "/tiles/plant/1/0/0/0.png/../../../../catalog.sqlite",
        "/tiles/%2e%2e/1/0/0/0.png",
    ],
)
def test_no_file_route_can_be_walked_out_of(root: Path, raw_path: str) -> None:
    status, body = raw_get(create_app(root), raw_path)
    assert status in (400, 404, 405, 422), (raw_path, status)
    assert b"SECRET" not in body and b"SQLite format" not in body and b"[project]" not in body


@pytest.mark.parametrize(
    ("path", "status"),
    [("/tiles/plant/abc/1/0/0.png", 422), ("/tiles/plant/999/1/0/0.png", 404), ("/tiles/plant/1/1/5/0.png", 422)],
)
def test_tiles_are_found_by_ids_only(client: TestClient, path: str, status: int) -> None:
    assert client.get(path).status_code == status


def test_inside_keeps_to_its_folder(root: Path) -> None:
    reports = root / "reports"
    assert inside(reports, "plant.html") == (reports / "plant.html").resolve()
    for bad in ("", "/etc/passwd", "../secret.txt", "a/../../secret.txt", "..\\secret.txt",
                "plant.html\x00", "escape.txt", "outside/secret.txt", "missing.html", "."):  # fmt: skip
        with pytest.raises(NotFound):
            inside(reports, bad)


def test_a_report_is_shown_with_its_styles_but_no_script(client: TestClient) -> None:
    response = client.get("/reports/plant.html")
    assert response.status_code == 200 and "report" in response.text
    policy = response.headers["content-security-policy"]
    assert "sandbox" in policy and "script-src" not in policy and "default-src 'none'" in policy
    (Path(client.app.state.workspace_root) / "reports" / "notes.txt").write_text("x")  # type: ignore[attr-defined]
    assert client.get("/reports/notes.txt").status_code == 404  # only report and chip types


# --- headers and hostile text -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/alerts", f"/sites/{PLAIN}", "/api/sites", "/api/sites/nope", "/static/app.js"])
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    headers = client.get(path).headers
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer" and headers["x-frame-options"] == "DENY"
    if path.startswith("/api/"):
        assert headers["cache-control"] == "no-store"


def test_pages_set_the_csrf_cookie_strictly(root: Path) -> None:
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        cookie = client.get("/").headers["set-cookie"]
    assert cookie.startswith(f"{CSRF_COOKIE}=") and "samesite=strict" in cookie.lower() and "Path=/" in cookie


def test_hostile_names_and_labels_stay_text(client: TestClient) -> None:
    page = client.get(f"/sites/{quote(HOSTILE, safe='')}").text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in page  # the title and the header
    assert "\\u003cscript\\u003e" in page  # the page data block cannot be closed by the name
    tags = re.findall(r"<script[^>]*>", page)
    assert len(tags) == page.count("</script>")  # the name closed no tag and opened none
    assert tags.count('<script type="application/json" id="page-data">') == 1
    assert all(" src=" in tag for tag in tags if "page-data" not in tag)  # no inline script
    label = "<img src=x onerror=alert(1)>"
    created = client.post(events(HOSTILE), json={"date": "2024-01-02", "label": label})
    assert created.status_code == 200 and created.json()["label"] == label  # data, kept as given
    listed = client.get(events(HOSTILE))
    assert listed.headers["content-type"] == "application/json" and listed.json()[0]["label"] == label
    client.delete(f"/api/events/{created.json()['id']}")


def test_errors_are_one_line_and_docs_are_off(client: TestClient) -> None:
    bad = client.post(events(), json={"date": "yesterday", "label": "x"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("date:") and "\n" not in bad.json()["detail"]
    missing = client.post(events(), json={"date": "2024-01-01"})
    assert missing.status_code == 422 and missing.json()["detail"].startswith("label:")
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404
