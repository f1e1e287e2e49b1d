"""Every check a request to ``sitewatch serve`` passes, and the headers every response carries.

The workbench shows imagery and findings an analyst may not want to publish yet, and it writes to
the catalog (reviews, annotations, events), so it is closed by default:

- **Where it listens.** Loopback (127.0.0.1, ::1, localhost) without a token is open: it is one
  person's machine. Any other address needs a token (``--token`` or ``SITEWATCH_TOKEN``); without
  one :meth:`Security.for_bind` refuses to start, rather than invent a secret the user never sees.
- **Host header.** Only the bound host, the loopback names and hosts allowed by name are served,
  so a hostile page cannot reach a local server by pointing its own name at 127.0.0.1 (DNS
  rebinding). Bound to every interface (0.0.0.0, ::), any Host is served: the token guards it.
- **Token.** With a token every request needs it: ``Authorization: Bearer T``, or the session
  cookie that ``?token=T`` on a page URL sets once (HttpOnly, SameSite=Strict) before redirecting to
  the same URL without it, so the token does not linger in the address bar or history. Compared
  with :func:`hmac.compare_digest`.
- **CSRF.** A state-changing request (POST, PUT, PATCH, DELETE) needs the ``X-CSRF-Token`` header
  equal to the ``sitewatch_csrf`` cookie, and that to the server's own value (double submit: a page
  on another site can neither read the cookie nor set the header), and its Origin, or failing that
  its Referer, must be this server when present. Bodies must be JSON (GeoJSON for the annotation
  upload): a cross-site HTML form can send neither without a CORS preflight, which is never granted.
- **Body size.** At most :data:`MAX_JSON_BYTES` (:data:`MAX_UPLOAD_BYTES` for the upload) are read,
  then reading stops with 413.
- **Files.** No route takes a file path except :func:`inside`'s callers, which keep it inside one
  workspace folder (no ``..``, no absolute path, no symbolic link out).
- **Headers.** A Content-Security-Policy of this server only (no inline script: pages carry their
  data in a ``<script type="application/json">`` block), ``nosniff``, no referrer, no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import HTTPException
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sitewatch.errors import InputError, NotFound

CSRF_COOKIE = "sitewatch_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_COOKIE = "sitewatch_session"
TOKEN_PARAM = "token"
#: Largest JSON body read; an annotation polygon or a find query is a few kilobytes.
MAX_JSON_BYTES = 1024**2
#: Largest GeoJSON upload (annotation import) read, before the library's own validation.
MAX_UPLOAD_BYTES = 5 * 1024**2
#: Where GeoJSON may be uploaded (the path ends so), with these content types.
UPLOAD_SUFFIX = "/annotations/import"
UPLOAD_TYPES = ("application/geo+json", "application/json")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # Leaflet aborts a tile by pointing it at an empty data: GIF
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
#: For a workspace file shown as it is (a site report): its own inline styles and images, no script.
FILE_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox"
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def is_loopback(host: str) -> bool:
    """Whether HOST (a name or address, IPv6 with or without brackets) is this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """A Host header or bind address without port or brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        return host.split(":", 1)[0]
    return host


@dataclass(frozen=True)
class Security:
    """The server's secrets and what it serves: the token (None: open), the Host names answered
    (None: any) and this process's CSRF value."""

    token: str | None
    allowed_hosts: frozenset[str] | None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    @classmethod
    def for_bind(cls, host: str, token: str | None = None, allowed_hosts: Sequence[str] = ()) -> Security:
        """The checks for a server bound to HOST.

        Raises:
            InputError: If HOST is not loopback and there is no token.
        """
        token = token.strip() if token else None
        if not token and not is_loopback(host):
            raise InputError(
                f"--host {host}", "serving beyond this machine needs a token: pass --token or set SITEWATCH_TOKEN"
            )
        if host.strip() in WILDCARD_HOSTS and not allowed_hosts:
            return cls(token or None, None)
        names = {_host_name(name) for name in (host, *LOOPBACK_HOSTS, *allowed_hosts)}
        return cls(token or None, frozenset(names))

    @property
    def session(self) -> str | None:
        """The session cookie's value: derived from the token, so the cookie never holds it."""
        if self.token is None:
            return None
        return hmac.new(self.token.encode(), b"sitewatch session", hashlib.sha256).hexdigest()

    def host_ok(self, host_header: str) -> bool:
        """Whether a request's Host header names this server."""
        return self.allowed_hosts is None or _host_name(host_header) in self.allowed_hosts

    def token_ok(self, given: str | None) -> bool:
        """Whether GIVEN is the token (constant time)."""
        return self.token is not None and given is not None and _same(given, self.token)

    def session_ok(self, given: str | None) -> bool:
        """Whether GIVEN is the session cookie's value (constant time)."""
        return self.session is not None and given is not None and _same(given, self.session)

    def csrf_ok(self, header: str | None, cookie: str | None) -> bool:
        """Double submit: the header equals the cookie, and both are this process's value."""
        return header is not None and cookie is not None and _same(header, cookie) and _same(cookie, self.csrf)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class BodyTooLarge(HTTPException):
    """A request body over its limit; reading stopped there."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the {limit:,} byte limit")


def body_limit(path: str) -> int:
    """How many body bytes a request to PATH may send."""
    return MAX_UPLOAD_BYTES if path.endswith(UPLOAD_SUFFIX) else MAX_JSON_BYTES


def refuse(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error in the API's shape: ``{"detail": one line}``."""
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class Guard:
    """ASGI middleware that applies the module docstring's checks before the app sees a request,
    bounds what it may read of the body, and adds :data:`SECURITY_HEADERS` to every response (a
    route may set its own Content-Security-Policy, as the workspace file route does)."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        send = _with_headers(send, api=request.url.path.startswith("/api/"))
        response = self.check(request)
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, _bounded(receive, body_limit(request.url.path)), send)

    def check(self, request: Request) -> Response | None:
        """The response that refuses REQUEST (or redirects it to drop a token), or None to serve it."""
        host = request.headers.get("host", "")
        if not self.security.host_ok(host):
            return refuse(400, f"host {host!r} is not served here")
        response = self._authenticate(request)
        if response is not None:
            return response
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > body_limit(request.url.path):
            return refuse(413, BodyTooLarge(body_limit(request.url.path)).detail)
        if request.method in UNSAFE_METHODS:
            return self._state_change(request)
        return None

    def _authenticate(self, request: Request) -> Response | None:
        security = self.security
        if security.token is None:
            return None
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and security.token_ok(credentials.strip()):
            return None
        given = request.query_params.get(TOKEN_PARAM)
        if given is not None and request.method in ("GET", "HEAD") and security.token_ok(given):
            return _drop_token(request, security)
        if security.session_ok(request.cookies.get(SESSION_COOKIE)):
            return None
        return refuse(401, "this server needs its token", {"www-authenticate": "Bearer"})

    def _state_change(self, request: Request) -> Response | None:
        origin = request.headers.get("origin") or request.headers.get("referer")
        host = request.headers.get("host", "").lower()
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or parts.netloc.lower() != host:
                return refuse(403, "cross-origin request refused")
        if not self.security.csrf_ok(request.headers.get(CSRF_HEADER), request.cookies.get(CSRF_COOKIE)):
            return refuse(403, "missing or wrong CSRF token (reload the page)")
        if request.method == "DELETE":
            return None
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        allowed = UPLOAD_TYPES if request.url.path.endswith(UPLOAD_SUFFIX) else ("application/json",)
        if kind not in allowed:
            return refuse(415, f"content type must be {' or '.join(allowed)}")
        return None


def _drop_token(request: Request, security: Security) -> Response:
    """Redirect to the same URL without the token, setting the session cookie."""
    query = urlencode([(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != TOKEN_PARAM])
    target = request.url.path + (f"?{query}" if query else "")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, security.session or "", httponly=True, samesite="strict", path="/")
    return response


def set_csrf_cookie(request: Request, response: Response, security: Security) -> None:
    """Give a page its CSRF cookie (readable by its script, sent only to this site)."""
    if request.cookies.get(CSRF_COOKIE) != security.csrf:
        response.set_cookie(CSRF_COOKIE, security.csrf, httponly=False, samesite="strict", path="/")


def _with_headers(send: Send, *, api: bool) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS.items():
                headers.setdefault(name, value)
            if api:
                headers.setdefault("cache-control", "no-store")
        await send(message)

    return wrapped


def _bounded(receive: Receive, limit: int) -> Receive:
    """RECEIVE that stops with 413 once more than LIMIT body bytes have come."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return wrapped


async def read_body(request: Request, limit: int) -> bytes:
    """At most LIMIT bytes of REQUEST's body; 413 (and no more reading) beyond.

    Raises:
        BodyTooLarge: If the body declares or sends more than LIMIT bytes.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def inside(base: Path, relative: str) -> Path:
    """The regular file RELATIVE names inside BASE, refusing any way out: an absolute path, ``..``,
    a backslash or NUL, or a symbolic link (anywhere on the way) that leads outside BASE.

    Raises:
        NotFound: If there is no such file inside BASE (a way out reads the same: nothing is found).
    """
    parts = PurePosixPath(relative).parts
    if (
        not relative
        or "\x00" in relative
        or "\\" in relative
        or PurePosixPath(relative).is_absolute()
        or any(part in ("..", ".") for part in parts)
    ):
        raise NotFound(f"no file {relative!r} here")
    root = base.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise NotFound(f"no file {relative!r} here")
    return target
