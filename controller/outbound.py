"""The outbound-call guard: which addresses HTTP calls, chat posts and alert webhooks may reach.

A URL comes from a definition, a template or a payload; where it may lead is decided here, once,
for every caller (``http.request``, ``channel.post``, alert sinks, the dry run, the definition check):

- :func:`judge` refuses an address by its kind (cloud metadata, unspecified, loopback, link-local,
  multicast, carrier-grade NAT, private, reserved; IPv4-mapped, -compatible, 6to4 and NAT64 IPv6
  spellings are judged as the IPv4 address they carry) unless the account's ``outbound.allow``
  names it. Cloud metadata is refused whatever the allow-list says: its answers are the machine's
  credentials.
- :class:`OutboundClient` makes the calls. Each new connection resolves the name once, judges
  every address it resolved to, and connects to one of those very addresses, so a DNS answer that
  changes between the check and the connect cannot win; TLS still sends SNI and verifies the
  certificate for the name. This is the approach of the ``advocate`` library: the connection
  classes of urllib3's pools are subclassed, nothing of requests or urllib3 is patched. Redirects
  are followed by hand, each hop judged alike, at most ``max_redirects``, never from https to
  http unless allowed; the body is streamed and refused past ``max_response_bytes``; the whole
  call, redirects and body included, is bounded by ``timeout`` beside the per-read timeout.
  Proxies from the environment are not used: a proxy would connect where the guard never looked.
- :func:`static_refusal` judges a URL without DNS (addresses written in any spelling the resolver
  accepts, ``localhost``, the metadata names) for the dry run and the definition check.

It sits below everything that calls out (the engine's effects, the safeguards' alert sinks, the
configuration that carries the policies, the definition rules) and imports nothing of them.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import socket
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from controller.errors import ExecutionError, TransientError

if TYPE_CHECKING:  # requests and urllib3 are imported by the first call: the definition check needs neither
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection
    from urllib3.connectionpool import HTTPConnectionPool

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[Address]]

MAX_RESPONSE_BYTES = 10 * 1024 * 1024
MAX_SECONDS = 120.0  # one call, every redirect and the whole body
MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)
METADATA = "cloud metadata"

# AWS, GCP and Azure (169.254.169.254), AWS ECS tasks, AWS over IPv6, Alibaba Cloud.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"))
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                            "instance-data.ec2.internal"})
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_HOST_CHARS = frozenset(string.ascii_lowercase + string.digits + "-.")
_CREDENTIALS = ("authorization", "proxy-authorization", "cookie")  # dropped when a redirect leaves the origin


class OutboundRefused(ExecutionError):
    """A call the guard refused; ``host``, ``address`` and ``rule`` say which and why."""

    default_failure = "guard"

    def __init__(self, message: str, *, host: str, address: str, rule: str):
        super().__init__(message)
        self.host, self.address, self.rule = host, address, rule


# -- the policy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allow:
    """One ``outbound.allow`` entry: a host name (``*.`` for its subdomains), an address or a CIDR,
    optionally with ``:port``."""

    text: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    name: str = ""
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> Allow:
        """The entry ``text`` means; ValueError saying what is wrong with it."""
        entry = text.strip().lower()
        try:
            return cls(text, network=ipaddress.ip_network(entry, strict=False))
        except ValueError:
            pass
        host, port = _split_port(entry)
        try:
            return cls(text, network=ipaddress.ip_network(host.strip("[]")), port=port)
        except ValueError:
            pass
        name = host.removeprefix("*.")
        if not name or not set(name) <= _HOST_CHARS or name.startswith(("-", ".")) or host.startswith("["):
            raise ValueError(f"{text!r} is not a host, address or CIDR (e.g. intranet.example:8443, "
                             f"10.0.0.0/8, [fd12::1]:443)")
        return cls(text, name=host, port=port)

    def permits(self, host: str, address: Address, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return any(a.version == self.network.version and a in self.network for a in _spellings(address))
        name = host.lower().rstrip(".")
        if self.name.startswith("*."):
            return name.endswith(self.name[1:])
        return name == self.name


def _split_port(entry: str) -> tuple[str, int | None]:
    bracketed = entry.startswith("[") and "]:" in entry
    if not bracketed and (entry.count(":") != 1 or entry.startswith("[")):
        return entry, None
    host, _, port = entry.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{entry!r}: the port {port!r} is not a number from 1 to 65535")
    return host, int(port)


@dataclass(frozen=True)
class OutboundPolicy:
    """What one account's calls may reach and how much they may take (``outbound:`` in the configuration)."""

    allow: tuple[Allow, ...] = ()
    max_response_bytes: int = MAX_RESPONSE_BYTES
    timeout: float = MAX_SECONDS
    max_redirects: int = MAX_REDIRECTS
    allow_downgrade: bool = False  # follow a redirect from https to http
    account: str = ""  # named in refusals, so they say where to allow the call

    @classmethod
    def of(cls, allow: Iterable[str] = (), **limits: Any) -> OutboundPolicy:
        return cls(tuple(Allow.parse(entry) for entry in allow), **limits)

    def permits(self, host: str, address: Address, port: int) -> bool:
        return any(entry.permits(host, address, port) for entry in self.allow)

    @property
    def where(self) -> str:
        return f"accounts.{self.account}.outbound.allow" if self.account else "outbound.allow"


# -- judging addresses ------------------------------------------------------------------------------


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, 6to4, NAT64, Teredo), or None."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _spellings(address: Address) -> list[Address]:
    inner = embedded_ipv4(address)
    return [address] if inner is None else [address, inner]


def rule_for(address: Address) -> str | None:
    """The rule that refuses ``address`` when nothing allows it; None for a public address."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return rule_for(inner)
    if address in METADATA_ADDRESSES:
        return METADATA
    if address.is_unspecified or address in _THIS_NETWORK:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address in _CGNAT:
        return "carrier-grade NAT"
    if any(address.version == n.version and address in n for n in _PRIVATE):
        return "private"
    if not address.is_global:
        return "reserved"
    return None


def judge(host: str, port: int, addresses: Iterable[Address], policy: OutboundPolicy) -> None:
    """OutboundRefused unless the call to ``host:port``, resolved to ``addresses``, may be made.

    Every address must pass: a name that resolves to a public and a private address is refused.
    """
    name = host.lower().rstrip(".").strip("[]")
    if name in METADATA_NAMES:
        raise _refused(host, port, None, METADATA, policy)
    for address in addresses:
        rule = rule_for(address)
        if rule is None or (rule != METADATA and policy.permits(name, address, port)):
            continue
        raise _refused(host, port, address, rule, policy)


def _refused(host: str, port: int, address: Address | None, rule: str, policy: OutboundPolicy) -> OutboundRefused:
    bare = host.strip("[]")
    target = f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"
    kind = f"{'an' if rule[0] in 'aeiou' else 'a'} {rule}"
    if address is None:
        what = f"{host} is {kind} name"
    else:
        inner = embedded_ipv4(address)
        shown = f"{address} ({inner} written as IPv6)" if inner is not None else str(address)
        if bare == str(address):
            what = f"{shown} is {kind} address"
        elif literal_address(bare) == address:  # another spelling of it: 2130706433, 0x7f.1
            what = f"{bare} is {shown}, {kind} address"
        else:
            what = f"{host} resolved to {shown}, {kind} address"
    if rule == METADATA:
        fix = "cloud metadata is never called: its answers are the machine's credentials"
    else:
        fix = f"if the call is intended, allow it in {policy.where} in the configuration (e.g. {target!r})"
    return OutboundRefused(f"outbound call to {target} refused: {what}; {fix}", host=host,
                           address=str(address or ""), rule=rule)


def literal_address(host: str) -> Address | None:
    """The address ``host`` spells without DNS, in every form the resolver accepts (``2130706433``,
    ``0x7f.1``, ``017700000001``, ``[::ffff:127.0.0.1]``), else None."""
    text = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not text or not set(text.lower()) <= set(string.hexdigits.lower() + "x."):
        return None
    try:  # inet_aton parses the legacy forms: no lookup, the same parser getaddrinfo uses
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def static_refusal(url: str, policy: OutboundPolicy) -> OutboundRefused | None:
    """The refusal :func:`judge` would give ``url`` without DNS: a literal address, ``localhost``
    (which always resolves to loopback) or a metadata name; None for any other name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None  # not a URL the call could make; the action says so itself
    address = literal_address(host)
    if address is None and (host == "localhost" or host.endswith(".localhost")):
        address = ipaddress.IPv4Address("127.0.0.1")
    try:
        judge(host, port, [address] if address is not None else [], policy)
    except OutboundRefused as refused:
        return refused
    return None


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (socket.gaierror when none)."""
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))


# -- the transport ----------------------------------------------------------------------------------


def _pinned(conn: HTTPConnection, policy: OutboundPolicy, resolver: Resolver) -> socket.socket:
    """Resolve once, judge every address, connect to a judged one (the rest in turn if it fails)."""
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
    from urllib3.util import connection as urllib3_connection

    host, port = conn.host, int(conn.port or 0)
    try:
        addresses = resolver(host, port)
    except socket.gaierror as error:
        raise NameResolutionError(host, conn, error) from error
    judge(host, port, addresses, policy)
    failure: Exception = NewConnectionError(conn, f"{host} resolved to no address")
    for address in addresses:
        try:
            return urllib3_connection.create_connection((str(address), port), conn.timeout,
                                                        source_address=conn.source_address,
                                                        socket_options=conn.socket_options)
        except TimeoutError as error:
            failure = ConnectTimeoutError(conn, f"Connection to {host} timed out. (connect timeout={conn.timeout})")
            failure.__cause__ = error
        except OSError as error:
            failure = NewConnectionError(conn, f"Failed to establish a new connection: {error}")
            failure.__cause__ = error
    raise failure


def _pool_classes(policy: OutboundPolicy, resolver: Resolver) -> dict[str, type[HTTPConnectionPool]]:
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Http(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _pinned(self, policy, resolver)

    class Https(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _pinned(self, policy, resolver)

    class HttpPool(HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(HTTPSConnectionPool):
        ConnectionCls = Https

    return {"http": HttpPool, "https": HttpsPool}


@cache
def _adapter_class() -> Callable[[OutboundPolicy, Resolver], HTTPAdapter]:
    """:class:`GuardedAdapter`, made at the first call (it subclasses requests' adapter)."""
    from requests.adapters import HTTPAdapter

    class GuardedAdapter(HTTPAdapter):
        """A requests adapter whose every connection goes through :func:`_pinned`; no proxies."""

        def __init__(self, policy: OutboundPolicy, resolver: Resolver = resolve):
            self._pools = _pool_classes(policy, resolver)  # before super().__init__, which makes the pool manager
            super().__init__()

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = self._pools

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            raise ExecutionError("outbound calls do not go through proxies: the guard judges the address it "
                                 "connects to; remove the proxy setting")

    return GuardedAdapter


def guarded_session(policy: OutboundPolicy, resolver: Resolver = resolve) -> requests.Session:
    """A session for one policy: guarded connections, no cookies kept, no proxies from the environment."""
    import requests

    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.headers["User-Agent"] = "wfctl"
    adapter = _adapter_class()(policy, resolver)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass(frozen=True)
class Answer:
    """The final response of a call: status, headers, the whole body (within the limit)."""

    status: int
    headers: dict[str, str]
    body: bytes
    encoding: str
    url: str  # after the redirects


@dataclass
class OutboundClient:
    """Makes calls under one policy: every hop judged, redirects by hand, size and time bounded.

    Raises OutboundRefused, ExecutionError (too large, too many redirects, a downgrade),
    TransientError (over the time limit) and requests' own exceptions for transport failures.
    """

    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    clock: Callable[[], float] = time.monotonic
    resolver: Resolver = resolve
    session: requests.Session = field(init=False)

    def __post_init__(self) -> None:
        self.session = guarded_session(self.policy, self.resolver)

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 30.0,
                json: Any = None, data: bytes | None = None, label: str | None = None) -> Answer:
        """The final answer after redirects; ``label`` names the call in errors instead of its URL (a chat
        webhook's path is its credential)."""
        deadline = self.clock() + self.policy.timeout
        sent = dict(headers or {})
        body: dict[str, Any] = {"json": json} if json is not None else {"data": data} if data is not None else {}
        for _ in range(self.policy.max_redirects + 1):
            remaining = self._remaining(deadline, label or shown_url(url))
            with self.session.request(method, url, headers=sent, timeout=min(timeout, remaining), stream=True,
                                      allow_redirects=False, **body) as response:
                location = response.headers.get("Location") if response.status_code in REDIRECTS else None
                if not location:
                    return Answer(response.status_code, dict(response.headers),
                                  self._read(response, deadline, label or shown_url(url)), response.encoding or "", url)
                status = response.status_code
            following = self._next_hop(url, location, label)
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body = "GET", {}  # what browsers and requests do; the body is not sent again
                sent = {k: v for k, v in sent.items() if k.lower() not in ("content-type", "content-length")}
            if _origin(following) != _origin(url):
                sent = {k: v for k, v in sent.items() if k.lower() not in _CREDENTIALS}
            url = following
        raise ExecutionError(f"{label or shown_url(url)}: more than {self.policy.max_redirects} redirects; call the "
                             f"final URL directly or raise outbound.max_redirects")

    def _remaining(self, deadline: float, shown: str) -> float:
        remaining = deadline - self.clock()
        if remaining <= 0:
            raise TransientError(f"{shown}: over the time limit of {self.policy.timeout:g} s for one call "
                                 f"(outbound.timeout)", failure="timeout")
        return remaining

    def _next_hop(self, url: str, location: str, label: str | None) -> str:
        following = urljoin(url, location.strip())
        scheme = urlsplit(following).scheme
        if scheme not in ("http", "https"):
            raise ExecutionError(f"{label or shown_url(url)} redirected to a {scheme or 'relative'}: URL, which is "
                                 f"not followed")
        if urlsplit(url).scheme == "https" and scheme == "http" and not self.policy.allow_downgrade:
            target = urlsplit(following).hostname if label else shown_url(following)
            raise ExecutionError(f"{label or shown_url(url)} redirected from https to {target}, which is not "
                                 f"followed; set outbound.allow_downgrade: true to allow it")
        return following

    def _read(self, response: requests.Response, deadline: float, shown: str) -> bytes:
        limit = self.policy.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(shown, limit)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > limit:
                raise _too_large(shown, limit)
            self._remaining(deadline, shown)
            chunks.append(chunk)
        return b"".join(chunks)


class Clients:
    """One :class:`OutboundClient` (one connection pool) per policy, made on first use, shared by threads.

    A pool per policy, not one for all: a connection judged under one account's allow-list must
    never carry another account's call.
    """

    def __init__(self, resolver: Resolver = resolve) -> None:
        self._resolver = resolver
        self._clients: dict[OutboundPolicy, OutboundClient] = {}
        self._lock = threading.Lock()

    def __call__(self, policy: OutboundPolicy) -> OutboundClient:
        with self._lock:
            client = self._clients.get(policy)
            if client is None:
                client = self._clients[policy] = OutboundClient(policy, resolver=self._resolver)
            return client


def _too_large(shown: str, limit: int) -> ExecutionError:
    return ExecutionError(f"{shown}: the response is larger than {limit} bytes and was cut off; ask the "
                          f"service for less or raise outbound.max_response_bytes")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


def shown_url(url: str) -> str:
    """The URL without user info and query, which often hold credentials."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}" + ("?\u2026" if parts.query else "")


# -- headers ----------------------------------------------------------------------------------------

MASK = "***"
_SECRET_NAMES = ("authorization", "cookie", "token", "secret", "passw", "key", "signature", "credential", "session")
_NOT_SECRET = frozenset({"idempotency-key"})  # derived from the execution and the step, shown on the step anyway


def secret_header(name: str) -> bool:
    """Whether a header named ``name`` carries a credential (Authorization, Cookie, X-Api-Key, ...)."""
    lowered = name.lower()
    return lowered not in _NOT_SECRET and any(part in lowered for part in _SECRET_NAMES)


def masked_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """``headers`` with the values of secret ones replaced by ``***``, for traces and outputs."""
    return {name: MASK if secret_header(str(name)) else value for name, value in headers.items()}
