"""Safe reading of STAC documents and fetching of remote files: every href is hostile.

A STAC document names other files by href, and whoever wrote it chooses them. Read naively, a
catalog could make sitewatch read ``/etc/passwd``, a cloud metadata service at 169.254.169.254 or a
router's admin page, or fill the disk. So:

- a *local* document's hrefs must stay inside its catalog folder (symlinks resolved);
- a *remote* document's hrefs must be http(s) URLs on allowed hosts, never local files;
- a URL is fetched only if its host is allowed and resolves to public addresses (unless the user
  named that host), without credentials in it; redirects are followed one hop at a time, each
  checked again; the connected socket's peer address is checked as well, so a DNS answer that
  changes between the check and the connection (DNS rebinding) is still refused;
- every read is size-limited while it streams, and downloads land atomically.

pystac and pystac-client read through :class:`GuardedStacIO` and :class:`GuardedApiIO`, passed to
them per call, never installed as a global default.

Refusals on safety grounds raise :class:`UnsafeHref`; documents and servers that fail or are too
large raise :class:`StacError`. Both name the href or file and the problem in one line.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

import requests
from pystac.catalog import Catalog
from pystac.link import Link
from pystac.serialization.identify import STACVersionID
from pystac.stac_io import DefaultStacIO
from pystac.stac_object import STACObject
from pystac.utils import HREF
from pystac_client.stac_api_io import StacApiIO
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from sitewatch import __version__
from sitewatch.errors import StacError, UnsafeHref
from sitewatch.settings import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

#: (connect, read) timeouts in seconds for every request; a read timeout is per socket read.
TIMEOUT_S: tuple[float, float] = (10.0, 60.0)
#: Whole-document deadline for JSON, so a server that trickles bytes cannot hold a read forever.
JSON_DEADLINE_S = 120.0
MAX_REDIRECTS = 5
_CHUNK_BYTES = 64 * 1024
_ERROR_EXCERPT_BYTES = 1024
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = f"sitewatch/{__version__}"


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class HostPolicy:
    """Which hosts remote STAC documents and assets may come from.

    ``allowed_hosts`` are host names or IP literals (no port); an entry starting with a dot, such as
    ``.example.com``, allows that domain's subdomains. ``named_hosts`` are the hosts the user typed
    (the STAC API or remote document they named); they are allowed too, and with
    ``private_named`` they may resolve to private or loopback addresses, since a user may well run
    their own STAC server at home or on 127.0.0.1. Every other host must resolve to public
    addresses only: a document cannot send sitewatch to a private network.
    """

    allowed_hosts: tuple[str, ...] = ()
    named_hosts: tuple[str, ...] = ()
    private_named: bool = True

    def __post_init__(self) -> None:
        # Normalise once, so every comparison is between lower-case names without brackets or dots.
        for name in ("allowed_hosts", "named_hosts"):
            hosts = tuple(sorted({_normal_host(h) for h in getattr(self, name) if h.strip()}))
            object.__setattr__(self, name, hosts)

    @classmethod
    def for_url(cls, url: str, extra_hosts: Iterable[str] = (), *, private_named: bool = True) -> HostPolicy:
        """The default policy for a URL the user named: its host (named), plus EXTRA_HOSTS.

        Raises:
            UnsafeHref: If URL is not an http(s) URL with a host.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise UnsafeHref(url, "not an http(s) URL with a host")
        return cls(tuple(extra_hosts), (parts.hostname,), private_named)

    def allows(self, host: str) -> bool:
        """Whether HOST may be fetched from at all."""
        host = _normal_host(host)
        if host in self.allowed_hosts or host in self.named_hosts:
            return True
        return any(entry.startswith(".") and host.endswith(entry) for entry in self.allowed_hosts)

    def private_ok(self, host: str) -> bool:
        """Whether HOST may resolve to a non-public address (only hosts the user named)."""
        return self.private_named and _normal_host(host) in self.named_hosts

    def describe(self) -> str:
        """The allowed hosts, for error messages."""
        hosts = sorted({*self.allowed_hosts, *self.named_hosts})
        return ", ".join(hosts) if hosts else "none"


def _address_problem(address: str) -> str | None:
    """Why ADDRESS may not be reached (e.g. "a private address"), or None for a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 scope id ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    checks = (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
        (not ip.is_global, "non-public"),
    )
    for hit, kind in checks:
        if hit:
            return f"a {kind} address"
    return None


def check_url(url: str, policy: HostPolicy) -> None:
    """Refuse URL unless it is plain http(s) to an allowed host that resolves to public addresses.

    The resolution check gives a clear early refusal; the connection itself is checked again (see
    the module docstring), so a changing DNS answer cannot slip through.

    Raises:
        UnsafeHref: If the scheme is not http(s), the URL holds credentials, spaces or control
            characters, the host is not allowed, or it resolves to a private, loopback, link-local,
            multicast, reserved or unspecified address and the user did not name it.
        StacError: If the host cannot be resolved.
    """
    if any(ord(char) <= 32 or ord(char) == 127 for char in url):
        raise UnsafeHref(url, "URL contains spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeHref(url, f"scheme {scheme or 'none'!r} is not allowed (only http and https)")
    if parts.username is not None or parts.password is not None:
        raise UnsafeHref(url, "URLs with credentials in them are refused")
    host = parts.hostname
    if not host:
        raise UnsafeHref(url, "URL has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeHref(url, "URL has an invalid port") from exc
    if not policy.allows(host):
        raise UnsafeHref(
            url,
            f"host {host} is not allowed (allowed: {policy.describe()}; add hosts with SITEWATCH_ALLOWED_HOSTS)",
        )
    if policy.private_ok(host):
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise StacError(url, f"cannot resolve host {host}") from exc
    for info in infos:
        address = str(info[4][0])
        problem = _address_problem(address)
        if problem is not None:
            raise UnsafeHref(url, f"host {host} resolves to {address}, {problem}")


# Connection-level check: the peer address of every new direct connection.


class _PeerCheckedMixin:
    """Check the peer address once the socket is connected: the DNS answer may have changed.

    ``exempt_hosts`` (set per adapter) are the hosts the user named, which may be private.
    Connections through a proxy use other pool classes and are not checked here: they go to the
    user's own proxy.
    """

    exempt_hosts: frozenset[str] = frozenset()
    host: str

    def _checked(self, sock: socket.socket) -> socket.socket:
        if _normal_host(self.host) in self.exempt_hosts:
            return sock
        peer = str(sock.getpeername()[0])
        problem = _address_problem(peer)
        if problem is not None:
            sock.close()
            raise UnsafeHref(self.host, f"connected to {peer}, {problem}")
        return sock


class _PeerCheckedHTTPConnection(_PeerCheckedMixin, HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return self._checked(super()._new_conn())


class _PeerCheckedHTTPSConnection(_PeerCheckedMixin, HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return self._checked(super()._new_conn())


class _GuardedAdapter(HTTPAdapter):
    """A requests adapter whose direct connections refuse non-public peers (except named hosts)."""

    def __init__(self, policy: HostPolicy) -> None:
        self._exempt = frozenset(policy.named_hosts if policy.private_named else ())
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
        """Build the pool manager with pools whose connections check their peer."""
        super().init_poolmanager(connections, maxsize, block, **kwargs)
        extra = {"exempt_hosts": self._exempt}
        http_conn = type("_HTTPConn", (_PeerCheckedHTTPConnection,), extra)
        https_conn = type("_HTTPSConn", (_PeerCheckedHTTPSConnection,), extra)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("_HTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("_HTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }


def guard_session(session: requests.Session, policy: HostPolicy) -> requests.Session:
    """Mount the peer-checking adapter on SESSION for http and https, and return it."""
    adapter = _GuardedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = _USER_AGENT
    return session


# Fetching.


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


@contextmanager
def _open_checked(
    url: str,
    policy: HostPolicy,
    session: requests.Session,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    params: dict[str, Any] | None = None,
) -> Iterator[requests.Response]:
    """A streamed 2xx response for URL, redirects followed by hand with every hop checked."""
    request = requests.Request(method, url, headers=headers, json=json_body, params=params)
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        check_url(current, policy)
        try:
            prepared = session.prepare_request(request)
            if urlsplit(current).hostname != urlsplit(url).hostname:
                # As requests does itself: credentials meant for the first host stay with it.
                prepared.headers.pop("Authorization", None)
            response = session.send(prepared, allow_redirects=False, stream=True, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            raise StacError(current, f"request failed ({_short(exc)})") from exc
        if response.status_code in _REDIRECT_CODES and "Location" in response.headers:
            target = urljoin(current, response.headers["Location"])
            response.close()
            if urlsplit(current).scheme.lower() == "https" and urlsplit(target).scheme.lower() == "http":
                raise UnsafeHref(target, f"redirect from {current} downgrades https to http")
            log.debug("redirect %s -> %s", current, target)
            keep_body = response.status_code in (307, 308)
            method = method if keep_body else "GET"
            same_host = urlsplit(target).hostname == urlsplit(url).hostname
            request = requests.Request(
                method, target, headers=headers if same_host else None, json=json_body if keep_body else None
            )
            current = target
            continue
        try:
            if not 200 <= response.status_code < 300:
                status = f"HTTP {response.status_code} {response.reason}".rstrip()
                excerpt = _error_excerpt(response)
                raise StacError(current, f"{status}: {excerpt}" if excerpt else status)
            yield response
        finally:
            response.close()
        return
    raise StacError(url, f"more than {MAX_REDIRECTS} redirects")


def _error_excerpt(response: requests.Response) -> str:
    """The start of an error response's body on one printable line: where a server says what it refused."""
    try:
        data = next(response.iter_content(_ERROR_EXCERPT_BYTES), b"")
    except requests.RequestException:
        return ""
    text = " ".join("".join(c if c.isprintable() else " " for c in data.decode("utf-8", "replace")).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _chunks(response: requests.Response, url: str, limit: int, what: str, deadline_s: float | None) -> Iterator[bytes]:
    """RESPONSE's body in chunks, refused as soon as it is known to exceed LIMIT bytes."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise StacError(url, f"is {int(declared)} bytes, over the {what} limit of {limit} bytes")
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    total = 0
    try:
        for chunk in response.iter_content(_CHUNK_BYTES):
            total += len(chunk)
            if total > limit:
                raise StacError(url, f"is over the {what} limit of {limit} bytes")
            if deadline is not None and time.monotonic() > deadline:
                raise StacError(url, f"took longer than {deadline_s:.0f} s to read")
            yield chunk
    except requests.RequestException as exc:
        raise StacError(url, f"download interrupted ({_short(exc)})") from exc


def _fetch(
    url: str,
    policy: HostPolicy,
    limits: Limits,
    session: requests.Session,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    params: dict[str, Any] | None = None,
) -> str:
    """The body of a JSON document at URL as text, size- and time-limited."""
    with _open_checked(
        url, policy, session, method=method, headers=headers, json_body=json_body, params=params
    ) as response:
        data = b"".join(_chunks(response, url, limits.max_json_bytes, "JSON", JSON_DEADLINE_S))
    return _decode(url, data)


def _decode(source: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StacError(source, f"not UTF-8 text (byte {exc.start})") from exc


def fetch_json(url: str, policy: HostPolicy, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Fetch a JSON object from URL under POLICY, at most ``limits.max_json_bytes``.

    Raises:
        UnsafeHref: If URL or any redirect hop breaks POLICY.
        StacError: If the request fails, the document is too large or not a JSON object.
    """
    with guard_session(requests.Session(), policy) as session:
        text = _fetch(url, policy, limits, session)
    return parse_json_object(url, text)


def parse_json_object(source: str | os.PathLike[str], text: str) -> dict[str, Any]:
    """Parse TEXT as a JSON object, or say in one line what is wrong with it.

    Raises:
        StacError: If TEXT is not JSON or its top level is not an object.
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StacError(source, f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except RecursionError as exc:
        raise StacError(source, "malformed JSON (nested too deeply)") from exc
    if not isinstance(value, dict):
        raise StacError(source, f"JSON top level is a {type(value).__name__}, not an object")
    return value


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


def safe_file_name(url: str, hint: str | None = None) -> str:
    """A file name for URL's download that cannot escape its folder or clash with another URL's.

    The name is built from HINT (or the URL path's last segment), reduced to letters, digits, dot,
    dash and underscore, and prefixed with a hash of the URL: never empty, never hidden, never a
    path, and the same URL always gets the same name.
    """
    raw = hint if hint else PurePosixPath(unquote(urlsplit(url).path)).name
    clean = _SAFE_NAME.sub("_", raw).strip("._-")
    suffix = PurePosixPath(clean).suffix
    suffix = suffix.lower() if _SAFE_SUFFIX.fullmatch(suffix) else ""
    stem = clean[: len(clean) - len(suffix)].strip("._-")[:80] or "asset"
    return f"{sha256(url.encode()).hexdigest()[:12]}-{stem}{suffix}"


def download(
    url: str, dest_dir: Path, policy: HostPolicy, limits: Limits = DEFAULT_LIMITS, *, name: str | None = None
) -> Path:
    """Download URL into DEST_DIR under POLICY, at most ``limits.max_download_bytes``.

    The file is written beside its final name and renamed at the end, so a refused or interrupted
    download leaves nothing behind. NAME is a hint for the file name (see :func:`safe_file_name`).

    Returns:
        The downloaded file's path inside DEST_DIR.

    Raises:
        UnsafeHref: If URL or any redirect hop breaks POLICY.
        StacError: If the request fails or the file is over the download limit.
    """
    final = dest_dir / safe_file_name(url, name)
    part = dest_dir / f".{final.name}.{uuid.uuid4().hex}.part"
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        with (
            guard_session(requests.Session(), policy) as session,
            _open_checked(url, policy, session) as response,
            part.open("wb") as out,
        ):
            for chunk in _chunks(response, url, limits.max_download_bytes, "download", None):
                out.write(chunk)
        os.replace(part, final)
    except OSError as exc:  # the disk side: full, read-only, a folder in the way
        raise StacError(final, f"cannot write the download ({exc.strerror or _short(exc)})") from exc
    finally:
        part.unlink(missing_ok=True)
    log.debug("downloaded %s to %s", url, final)
    return final


# Hrefs.


def _is_http(href: str) -> bool:
    return urlsplit(href).scheme.lower() in ("http", "https")


def _looks_local_absolute(href: str) -> bool:
    """A POSIX or Windows absolute path (not a network-path reference such as ``//host/x``)."""
    return (
        (href.startswith("/") and not href.startswith("//"))
        or href.startswith("\\")
        or (re.match(r"^[A-Za-z]:[\\/]", href) is not None)
    )


def local_path_of(href: str) -> Path:
    """The local path an href names: a plain path or a ``file:`` URL on this machine.

    Raises:
        UnsafeHref: If HREF is a ``file:`` URL on another host, or any other scheme.
    """
    parts = urlsplit(href)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UnsafeHref(href, f"file URL on another host ({parts.netloc})")
        return Path(url2pathname(parts.path))
    if scheme and not re.fullmatch(r"[a-z]", scheme):  # a one-letter scheme is a Windows drive
        raise UnsafeHref(href, f"scheme {scheme!r} is not allowed here")
    return Path(href)


def _resolved(path: Path, href: str) -> Path:
    """PATH made absolute with every symlink followed, so containment is checked on the real file."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11)
        raise UnsafeHref(href, f"cannot be resolved to a real path ({_short(exc)})") from exc


def _with_context(exc: UnsafeHref, base: str) -> UnsafeHref:
    return UnsafeHref(exc.source, f"{exc.problem} (linked from {base})")


def resolve_href(href: str, base: str | os.PathLike[str], policy: HostPolicy, root: Path | None = None) -> Path | str:
    """Make HREF, found in the document at BASE, absolute and check that it is safe to follow.

    BASE is where the document really is (a local path, a ``file:`` URL or an http(s) URL), not
    what its own self link claims, so a document cannot move itself somewhere else.

    - Local document: a relative or absolute path (or ``file:`` URL) must resolve, symlinks
      included, inside ROOT (default: the document's folder); an http(s) href must pass
      :func:`check_url`.
    - Remote document: only http(s) URLs (relative ones joined to BASE) that pass
      :func:`check_url`; never ``file:`` URLs or local absolute paths.

    Returns:
        A resolved local ``Path`` or an absolute http(s) URL.

    Raises:
        UnsafeHref: If the href escapes ROOT, reaches local files from a remote document, uses
            another scheme, or breaks POLICY. The message names the href and the document.
        StacError: If a remote host cannot be resolved.
    """
    base_text = os.fspath(base)
    if _is_http(base_text):
        return _resolve_remote(href, base_text, policy)
    base_path = local_path_of(base_text)
    return _resolve_local(href, base_path, policy, (root or base_path.parent).resolve())


def _resolve_remote(href: str, base: str, policy: HostPolicy) -> str:
    scheme = urlsplit(href).scheme.lower()
    if scheme == "file":
        raise UnsafeHref(href, f"a remote document may not point to local files (linked from {base})")
    if not scheme and _looks_local_absolute(href):
        raise UnsafeHref(href, f"a remote document may not name a local path (linked from {base})")
    if scheme and scheme not in ("http", "https"):
        raise UnsafeHref(href, f"scheme {scheme!r} is not allowed (only http and https; linked from {base})")
    url = urljoin(base, href)
    try:
        check_url(url, policy)
    except UnsafeHref as exc:
        raise _with_context(exc, base) from exc
    return url


def _resolve_local(href: str, base_path: Path, policy: HostPolicy, root: Path) -> Path | str:
    if _is_http(href):
        try:
            check_url(href, policy)
        except UnsafeHref as exc:
            raise _with_context(exc, str(base_path)) from exc
        return href
    if href.startswith("/vsi"):
        raise UnsafeHref(href, f"GDAL virtual file paths are not allowed (linked from {base_path})")
    try:
        path = local_path_of(href)
    except UnsafeHref as exc:
        raise _with_context(exc, str(base_path)) from exc
    resolved = _resolved(base_path.parent / path, href)
    if not resolved.is_relative_to(root):
        raise UnsafeHref(href, f"resolves to {resolved}, outside the catalog folder {root} (linked from {base_path})")
    return resolved


def read_local_text(path: Path, limits: Limits = DEFAULT_LIMITS) -> str:
    """Read a local JSON document as text, refusing it before reading if it is over the limit.

    Raises:
        StacError: If PATH is missing, not a file, over ``limits.max_json_bytes`` or not UTF-8.
    """
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise StacError(path, "not a regular file")
        if size > limits.max_json_bytes:
            raise StacError(path, f"is {size} bytes, over the JSON limit of {limits.max_json_bytes} bytes")
        with path.open("rb") as src:
            data = src.read(limits.max_json_bytes + 1)
    except FileNotFoundError as exc:
        raise StacError(path, "no such file") from exc
    except OSError as exc:
        raise StacError(path, f"cannot be read ({exc.strerror or _short(exc)})") from exc
    if len(data) > limits.max_json_bytes:  # it grew after stat(): still refuse
        raise StacError(path, f"is over the JSON limit of {limits.max_json_bytes} bytes")
    return _decode(str(path), data)


# pystac and pystac-client I/O.


def require_modern_stac(source: str | os.PathLike[str], document: dict[str, Any]) -> None:
    """Refuse a document without ``stac_version`` or older than STAC 1.0.0-beta.1.

    pystac merges such old items with their collection by reading the item's collection link with
    the *global default* StacIO (``pystac/serialization/common_properties.py``), which no guard
    passed per call can reach: an old-looking item could make it read any file or URL. The test
    mirrors pystac's own, so every document it lets through skips that read.

    Raises:
        StacError: If the version is missing or too old.
    """
    version = document.get("stac_version")
    if not isinstance(version, str):
        raise StacError(source, "no stac_version: not a STAC document")
    if not STACVersionID(version) > "0.9.0":
        raise StacError(source, f"STAC {version} is not supported (1.0.0 or later is)")


class GuardedStacIO(DefaultStacIO):
    """pystac I/O that reads only through sitewatch's checks.

    Remote hrefs go through :func:`check_url` and the size-limited fetch; local hrefs must lie
    inside ROOT (a local catalog's folder). With ROOT ``None`` (a remote catalog) no local file can
    be read at all. Pass an instance to pystac calls (``stac_io=``); never make it the default.
    """

    def __init__(self, policy: HostPolicy, limits: Limits = DEFAULT_LIMITS, root: Path | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.limits = limits
        self.root = None if root is None else root.resolve()
        self.session = guard_session(requests.Session(), policy)

    def read_text_from_href(self, href: str) -> str:
        """Read HREF as text if it is safe to, else raise.

        Raises:
            UnsafeHref: If HREF is a local file outside ROOT (or any local file without a ROOT),
                or a URL that breaks the host policy.
            StacError: If the read fails or the document is over the JSON limit.
        """
        if _is_http(href):
            return _fetch(href, self.policy, self.limits, self.session)
        if self.root is None:
            raise UnsafeHref(href, "local files cannot be read from a remote catalog")
        path = _resolved(local_path_of(href), href)
        if not path.is_relative_to(self.root):
            raise UnsafeHref(href, f"resolves to {path}, outside the catalog folder {self.root}")
        return read_local_text(path, self.limits)

    def stac_object_from_dict(
        self,
        d: dict[str, Any],
        href: HREF | None = None,
        root: Catalog | None = None,
        preserve_dict: bool = True,
    ) -> STACObject:
        """Build a pystac object from D, after refusing STAC too old to build safely.

        Raises:
            StacError: See :func:`require_modern_stac`.
        """
        require_modern_stac(os.fspath(href) if href is not None else "STAC document", d)
        return super().stac_object_from_dict(d, href, root, preserve_dict)

    def close(self) -> None:
        """Close the HTTP session's pooled connections."""
        self.session.close()


class GuardedApiIO(StacApiIO):
    """pystac-client I/O whose every request goes through sitewatch's checks.

    Requests (the landing page, search pages, ``next`` links, collections) are sent with the
    size-limited, redirect-checked fetch on a session whose connections refuse non-public peers.
    Plain local paths are refused: an API's links are URLs.
    """

    def __init__(self, policy: HostPolicy, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(max_retries=None)
        self.policy = policy
        self.limits = limits
        guard_session(self.session, policy)

    def stac_object_from_dict(
        self,
        d: dict[str, Any],
        href: HREF | None = None,
        root: Catalog | None = None,
        preserve_dict: bool = True,
    ) -> STACObject:
        """Build a pystac-client object from D, after refusing STAC too old to build safely.

        Raises:
            StacError: See :func:`require_modern_stac`.
        """
        require_modern_stac(os.fspath(href) if href is not None else "STAC API response", d)
        return super().stac_object_from_dict(d, href, root, preserve_dict)

    def read_text(self, source: HREF, *args: Any, **kwargs: Any) -> str:
        """Read SOURCE (a URL or a pagination Link) through :meth:`request`.

        Raises:
            UnsafeHref: If SOURCE is a local path rather than an http(s) URL.
        """
        if not isinstance(source, Link) and not _is_http(str(os.fspath(source))):
            raise UnsafeHref(str(os.fspath(source)), "a STAC API may only be read over http(s)")
        text: str = super().read_text(source, *args, **kwargs)
        return text

    def request(
        self,
        href: str,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> str:
        """Send one API request (GET with query parameters, or POST with a JSON body), checked.

        Raises:
            UnsafeHref: If HREF or a redirect hop breaks the host policy.
            StacError: If the request fails, the server answers an error or the body is too large.
        """
        verb = (method or "GET").upper()
        with_body = verb in ("POST", "PUT", "PATCH")
        return _fetch(
            href,
            self.policy,
            self.limits,
            self.session,
            method=verb,
            headers=headers,
            json_body=parameters if with_body else None,
            params=None if with_body else parameters or None,
        )
