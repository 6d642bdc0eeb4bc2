"""The outbound-call guard (controller.outbound) on every path that calls out.

Real HTTP servers on 127.0.0.1, allowed explicitly or not; names resolved by the system resolver
(``localhost``, ``2130706433``), or by an injected one where a name must resolve to a given
address. No call leaves the machine: refused calls never connect at all.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from enginekit import Kit, kit
from gitutil import commit_files, make_repo
from httpkit import http_kit
from servers import ALLOW_LOOPBACK, LOOPBACK, HttpServer, http_server

from controller.cli import cli
from controller.config import Config, load_config
from controller.engine.actions import channel_post, http_request
from controller.engine.actions.base import ActionContext
from controller.engine.dryrun import DryRunner, SyntheticDirectory
from controller.engine.live import LiveEffects
from controller.errors import ExecutionError, TransientError, UsageError, WfcError
from controller.model.entries import DirectoryEntry
from controller.outbound import (
    Allow,
    OutboundClient,
    OutboundPolicy,
    OutboundRefused,
    judge,
    literal_address,
    masked_headers,
    rule_for,
    secret_header,
)
from controller.safeguards.delivery import Sinks

WF = "workflows.d/acme/{}.yaml"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
MANUAL = "{type: manual, entities: [ticket]}"
WEBHOOK = "{type: webhook}"


def wf(name: str, actions: str, trigger: str = MANUAL) -> str:
    return (f"apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n  trigger: {trigger}\n"
            f"  actions:\n{actions}")


def call(url: str, extra: str = "") -> str:
    return f"    - {{id: crm, type: http.request, method: POST, url: '{url}', json: {{a: 1}}{extra}}}\n"


class Channels:
    """An account directory of chat channels only."""

    def __init__(self, **webhooks: str) -> None:
        self.entries = {f"channel:{c}": DirectoryEntry("channel", c, name=c, data={"webhook_url": url})
                        for c, url in webhooks.items()}

    def get(self, account: str, ref: str) -> DirectoryEntry | None:
        return self.entries.get(ref)


def only(*allow: str) -> Config:
    """The default configuration with exactly these ``outbound.allow`` entries."""
    return Config(outbound_policies={"": OutboundPolicy.of(allow)})


def port_of(server: HttpServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.fixture
def web() -> Iterator[HttpServer]:
    with http_server() as server:
        yield server


@pytest.fixture
def admin() -> Iterator[HttpServer]:
    """An internal admin port: whatever it answers must never reach a step's output."""
    with http_server() as server:
        server.respond("/secret", text="root password: hunter2")
        yield server


DEFAULT = OutboundPolicy()


def refusal(url: str, policy: OutboundPolicy = DEFAULT, **client: Any) -> OutboundRefused:
    with pytest.raises(OutboundRefused) as caught:
        OutboundClient(policy, **client).request("GET", url, timeout=5)
    return caught.value


# -- judging addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "rule"), [
    ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd12::1", "private"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("100.64.0.1", "carrier-grade NAT"), ("240.0.0.1", "reserved"), ("192.0.2.1", "reserved"),
    ("169.254.169.254", "cloud metadata"), ("fd00:ec2::254", "cloud metadata"), ("100.100.100.200", "cloud metadata"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::10.0.0.1", "private"),
    ("2002:7f00:1::", "loopback"),
    ("64:ff9b::7f00:1", "loopback"),
])
def test_every_refused_kind_of_address_is_named(address: str, rule: str) -> None:
    """Each non-public address gets the rule that refuses it; IPv6 spellings of IPv4 are judged as what they carry."""
    assert rule_for(ipaddress.ip_address(address)) == rule


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:93.184.216.34"])
def test_public_addresses_pass(address: str) -> None:
    """A public address is not refused, in any spelling."""
    assert rule_for(ipaddress.ip_address(address)) is None
    judge("example.com", 443, [ipaddress.ip_address(address)], OutboundPolicy())


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f.1", "017700000001", "0x7f000001", "127.1", "127.0.0.1.",
                                      "[::ffff:127.0.0.1]"])
def test_legacy_spellings_of_loopback_are_read_without_dns(spelling: str) -> None:
    """Integer, hex, octal and short IPv4 forms are parsed as the resolver would parse them."""
    address = literal_address(spelling)
    assert address is not None and rule_for(address) is not None and "loopback" in str(rule_for(address))


@pytest.mark.parametrize("name", ["example.com", "cafe.be", "deadbeef", "crm.acme.test", ""])
def test_names_are_not_addresses(name: str) -> None:
    assert literal_address(name) is None


def test_allow_entries_are_hosts_cidrs_and_ports() -> None:
    """Hosts (``*.`` for subdomains), addresses and CIDRs, each optionally with a port."""
    policy = OutboundPolicy.of(["127.0.0.1:8080", "10.0.0.0/8", "intranet.example:8443", "*.corp.example",
                                "[fd12::1]:443", "::1"])
    loopback, ten, fd12 = (ipaddress.ip_address(a) for a in ("127.0.0.1", "10.9.8.7", "fd12::1"))
    assert policy.permits("127.0.0.1", loopback, 8080) and not policy.permits("127.0.0.1", loopback, 8081)
    assert policy.permits("::ffff:127.0.0.1", ipaddress.ip_address("::ffff:127.0.0.1"), 8080)  # the same address
    assert policy.permits("files.internal", ten, 1)  # by address: whatever the name
    assert policy.permits("intranet.example", ten, 8443) and not policy.permits("intranet.example", loopback, 443)
    assert policy.permits("a.corp.example", loopback, 1) and not policy.permits("corp.example.evil", loopback, 1)
    assert policy.permits("x", fd12, 443) and not policy.permits("x", fd12, 80)
    assert policy.permits("x", ipaddress.ip_address("::1"), 1)


@pytest.mark.parametrize("entry", ["bad host!", "host:99999", "host:http", "[::1]:0", "-x.example", ""])
def test_bad_allow_entries_say_what_is_wrong(entry: str) -> None:
    with pytest.raises(ValueError, match=r"is not a host|port"):
        Allow.parse(entry)


def test_metadata_is_refused_even_when_its_network_is_allowed() -> None:
    """An allow-list for link-local still never reaches 169.254.169.254 (nor metadata.google.internal)."""
    policy = OutboundPolicy.of(["169.254.0.0/16", "metadata.google.internal"])
    judge("printer", 80, [ipaddress.ip_address("169.254.1.1")], policy)
    with pytest.raises(OutboundRefused, match="cloud metadata is never called"):
        judge("169.254.169.254", 80, [ipaddress.ip_address("169.254.169.254")], policy)
    with pytest.raises(OutboundRefused, match="metadata.google.internal is a cloud metadata name"):
        judge("metadata.google.internal", 80, [], policy)


def test_every_address_a_name_resolves_to_must_pass() -> None:
    """A name resolving to a public and a loopback address is refused, naming the loopback one."""
    def resolver(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("127.0.0.1")]

    refused = refusal("http://rebind.example:8080/", resolver=resolver)
    assert (refused.host, refused.address, refused.rule) == ("rebind.example", "127.0.0.1", "loopback")


def test_a_refusal_names_host_address_rule_and_what_to_do(web: HttpServer) -> None:
    """The message: the host and port, what it resolved to, the rule, and where to allow it."""
    port = port_of(web)
    refused = refusal(f"http://localhost:{port}/x", replace(OutboundPolicy(), account="acme"))
    assert str(refused) == (f"outbound call to localhost:{port} refused: localhost resolved to 127.0.0.1, a loopback "
                            f"address; if the call is intended, allow it in accounts.acme.outbound.allow in the "
                            f"configuration (e.g. 'localhost:{port}')")
    assert refused.failure == "guard" and web.requests == []


# -- the spellings a hostile tester tried, against a real server --------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1", "017700000001", "[::ffff:127.0.0.1]",
                                  "localhost"])
def test_loopback_in_any_spelling_is_refused_before_connecting(web: HttpServer, host: str) -> None:
    """The check sees the resolved address: every spelling of 127.0.0.1 is refused, nothing reaches the server."""
    refused = refusal(f"http://{host}:{port_of(web)}/")
    assert refused.rule == "loopback" and refused.address in ("127.0.0.1", "::ffff:7f00:1")
    assert "127.0.0.1" in str(refused) and "loopback address" in str(refused)
    assert web.requests == []


def test_an_allowed_address_is_reached_in_its_integer_spelling(web: HttpServer) -> None:
    """With 127.0.0.1 allowed, http://2130706433:PORT/ connects to the checked address and gets its answer."""
    answer = OutboundClient(LOOPBACK).request("GET", f"http://2130706433:{port_of(web)}/ping", timeout=5)
    assert answer.status == 200 and json.loads(answer.body) == {"ok": True}
    assert [r.path for r in web.requests] == ["/ping"]


def test_proxies_from_the_environment_are_not_used(web: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY would connect where the guard never looked: calls go direct."""
    with http_server() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        assert OutboundClient(LOOPBACK).request("GET", f"{web.url}/direct", timeout=5).status == 200
    assert proxy.requests == [] and [r.path for r in web.requests] == ["/direct"]


# -- redirects ----------------------------------------------------------------------------------------


def redirect_targets(admin: HttpServer) -> list[tuple[str, str]]:
    port = port_of(admin)
    return [(f"http://127.0.0.1:{port}/secret", f"127.0.0.1:{port} refused: 127.0.0.1 is a loopback address"),
            (f"http://[::ffff:127.0.0.1]:{port}/secret", "::ffff:7f00:1 (127.0.0.1 written as IPv6), a loopback address"),
            ("http://169.254.169.254/latest/meta-data/", "cloud metadata is never called"),
            (f"http://localhost:{port}/secret", "localhost resolved to 127.0.0.1, a loopback address")]


def test_each_redirect_hop_is_judged_and_the_step_says_why(tmp_path: Path, store_url: str, web: HttpServer,
                                                           admin: HttpServer) -> None:
    """An allowed host that 302s to an internal admin port, a mapped address, metadata or localhost: the
    second hop is refused, the admin port is never reached and its answer is in no step output."""
    targets = redirect_targets(admin)
    for n, (target, _) in enumerate(targets):
        web.respond(f"/go{n}", 302, headers={"Location": target})
    actions = "".join(f"    - {{id: hop{n}, type: http.request, url: '{web.url}/go{n}'}}\n" for n in range(len(targets)))
    with kit(tmp_path, store_url, config=only(f"127.0.0.1:{port_of(web)}")) as k:
        k.deploy({WF.format(f"hop{n}"): wf(f"hop{n}", actions.splitlines(keepends=True)[n]) for n in range(len(targets))})
        for n, (_, reason) in enumerate(targets):
            execution = k.show(k.run(f"acme/hop{n}"))
            assert execution["status"] == "failed"
            step = k.steps(execution["id"])[f"hop{n}"]
            assert step["status"] == "failed" and step["failure"] == "guard"
            assert reason in step["error"] and step["error"].startswith(f"step hop{n}: outbound call to ")
            assert "hunter2" not in json.dumps(execution)
    assert admin.requests == [] and len(web.requests) == len(targets)


def test_redirects_are_limited(web: HttpServer) -> None:
    """A redirect loop stops after max_redirects hops with an error saying so."""
    web.respond("/loop", 302, headers={"Location": "/loop"})
    with pytest.raises(ExecutionError, match=r"/loop: more than 2 redirects"):
        OutboundClient(replace(LOOPBACK, max_redirects=2)).request("GET", f"{web.url}/loop", timeout=5)
    assert len(web.requests) == 3


def test_a_redirect_to_another_origin_drops_credentials_and_a_303_turns_into_get(web: HttpServer) -> None:
    """Authorization and Cookie stay with their origin; a POST answered 303 is followed by a GET without body."""
    with http_server() as other:
        web.respond("/same", 307, headers={"Location": "/kept"})
        web.respond("/away", 303, headers={"Location": f"{other.url}/landed"})
        client = OutboundClient(LOOPBACK)
        secret = {"Authorization": "Bearer s3cret", "Cookie": "sid=1", "X-Trace": "t1"}
        client.request("POST", f"{web.url}/same", headers=secret, json={"a": 1}, timeout=5)
        client.request("POST", f"{web.url}/away", headers=secret, json={"a": 1}, timeout=5)
    kept = web.requests[1]
    assert (kept.method, kept.path, kept.headers["Authorization"], kept.json) == ("POST", "/kept", "Bearer s3cret", {"a": 1})
    [landed] = other.requests
    assert (landed.method, landed.body) == ("GET", b"")
    assert "Authorization" not in landed.headers and "Cookie" not in landed.headers
    assert landed.headers["X-Trace"] == "t1"


def test_a_redirect_to_another_scheme_is_not_followed(web: HttpServer) -> None:
    """Only http(s) hops are followed: a Location of file: (or any other scheme) fails the call."""
    web.respond("/file", 302, headers={"Location": "file:///etc/passwd"})
    with pytest.raises(ExecutionError, match=r"/file redirected to a file: URL, which is not followed"):
        OutboundClient(LOOPBACK).request("GET", f"{web.url}/file", timeout=5)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for guarded.test, and the file of the CA that signed it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def certificate(subject: str, key: Any, issuer: str, signer: Any, *, ca: bool) -> Any:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(datetime(2020, 1, 1)).not_valid_after(datetime(2100, 1, 1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, "test CA", ca_key, ca=True)
    leaf = certificate("guarded.test", key, "test CA", ca_key, ca=False)
    folder = tmp_path_factory.mktemp("tls")
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "leaf.pem")
    return context, folder / "ca.pem"


def to_loopback(host: str, port: int) -> list[Any]:
    """A resolver for names that do not exist: every one is 127.0.0.1."""
    return [ipaddress.ip_address("127.0.0.1")]


def test_https_to_the_pinned_address_still_verifies_the_certificate_for_the_name(tls: Any) -> None:
    """The connection goes to the judged address while SNI and the certificate check use the name:
    guarded.test is reached; the same server under another name fails verification."""
    context, ca = tls
    with http_server(context) as secure:
        port = port_of(secure)
        client = OutboundClient(LOOPBACK, resolver=to_loopback)
        client.session.verify = str(ca)
        answer = client.request("GET", f"https://guarded.test:{port}/tls", timeout=5)
        assert answer.status == 200 and [r.path for r in secure.requests] == ["/tls"]
        with pytest.raises(requests.exceptions.SSLError, match="guarded.test|hostname|match"):
            client.request("GET", f"https://other.test:{port}/tls", timeout=5)
        assert len(secure.requests) == 1


def test_an_https_redirect_to_http_is_refused_unless_allowed(tls: Any, web: HttpServer) -> None:
    """https -> http is not followed (the call would lose its protection) unless allow_downgrade is set."""
    context, ca = tls
    with http_server(context) as secure:
        secure.respond("/down", 302, headers={"Location": f"{web.url}/plain"})
        client = OutboundClient(LOOPBACK, resolver=to_loopback)
        client.session.verify = str(ca)
        with pytest.raises(ExecutionError, match=r"redirected from https to http://127.0.0.1:\d+/plain, which is not"):
            client.request("GET", f"https://guarded.test:{port_of(secure)}/down", timeout=5)
        assert web.requests == []
        allowed = OutboundClient(replace(LOOPBACK, allow_downgrade=True), resolver=to_loopback)
        allowed.session.verify = str(ca)
        assert allowed.request("GET", f"https://guarded.test:{port_of(secure)}/down", timeout=5).url == f"{web.url}/plain"
    assert [r.path for r in web.requests] == ["/plain"]


# -- size and time ------------------------------------------------------------------------------------


@contextmanager
def streaming_server(chunks: int, size: int) -> Iterator[str]:
    """A server on 127.0.0.1 that answers one request with ``chunks`` writes of ``size`` bytes and no
    Content-Length (the body ends when the connection closes)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
            try:
                for _ in range(chunks):
                    conn.sendall(b"x" * size)
            except OSError:
                pass  # the client stopped reading: that is the point

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        listener.close()
        thread.join(timeout=5)


def test_a_body_over_the_declared_limit_fails_the_step(web: HttpServer) -> None:
    """A response with a Content-Length over max_response_bytes is refused before its body is read."""
    web.respond("/big", text="y" * 5000)
    with pytest.raises(ExecutionError, match=r"/big: the response is larger than 1000 bytes and was cut off"):
        OutboundClient(replace(LOOPBACK, max_response_bytes=1000)).request("GET", f"{web.url}/big", timeout=5)


def test_a_streamed_body_is_cut_off_at_the_limit() -> None:
    """Without a Content-Length the body is streamed and the call stops once it passes the limit."""
    with streaming_server(chunks=64, size=16384) as url, pytest.raises(ExecutionError, match="larger than 100000"):
        OutboundClient(replace(LOOPBACK, max_response_bytes=100_000)).request("GET", url, timeout=5)


def test_the_whole_call_is_bounded_in_time() -> None:
    """A body that keeps coming (each read within the read timeout) stops at outbound.timeout: a retryable timeout."""
    ticks = iter(range(1000))
    with streaming_server(chunks=64, size=16384) as url:
        client = OutboundClient(replace(LOOPBACK, timeout=5.0), clock=lambda: float(next(ticks)))
        with pytest.raises(TransientError, match=r"over the time limit of 5 s for one call \(outbound.timeout\)") as caught:
            client.request("GET", url, timeout=30)
    assert caught.value.failure == "timeout"


# -- every path that calls out: http.request, channel.post, alert webhooks ------------------------------


def test_http_request_to_loopback_is_refused_unless_allowed(tmp_path: Path, store_url: str, web: HttpServer) -> None:
    """Without an allow-list entry the step fails naming the rule; with 127.0.0.1 allowed it succeeds."""
    for config, expected in ((Config(), "failed"), (only("127.0.0.1"), "succeeded")):
        with kit(tmp_path / expected, store_url, config=config) as k:
            k.deploy({WF.format("crm"): wf("crm", call(f"{web.url}/crm"))})
            execution = k.run("acme/crm")
            step = k.steps(execution)["crm"]
            assert step["status"] == expected
            if expected == "failed":
                assert "127.0.0.1 is a loopback address" in step["error"] and "outbound.allow" in step["error"]
                assert web.requests == []
    assert [r.path for r in web.requests] == ["/crm"]


def test_channel_post_to_loopback_is_refused_unless_allowed(tmp_path: Path, store_url: str, web: HttpServer) -> None:
    """A channel whose webhook is on 127.0.0.1 is refused by default; allowed, the post goes out."""
    directory = f"channels:\n  - {{id: C1, name: oncall, webhook_url: '{web.url}/services/T/B/secret'}}\n"
    post = "    - {id: page, type: channel.post, channel: 'channel:C1', text: hi}\n"
    for config, expected in ((Config(), "failed"), (only(f"127.0.0.1:{port_of(web)}"), "succeeded")):
        with kit(tmp_path / expected, store_url, config=config) as k:
            k.directory(directory)
            k.deploy({WF.format("page"): wf("page", post)})
            step = k.steps(k.run("acme/page"))["page"]
            assert step["status"] == expected, step["error"]
            if expected == "failed":
                assert "127.0.0.1 is a loopback address" in step["error"] and "secret" not in step["error"]
                assert web.requests == []
    assert [r.path for r in web.requests] == ["/services/T/B/secret"]


def test_alert_webhooks_are_refused_unless_allowed(tmp_path: Path, web: HttpServer) -> None:
    """The alert sender calls through the guard under the alert's account's policy."""
    sink = {"type": "webhook", "url": f"{web.url}/alerts"}
    message = {"subject": "s", "text": "t", "alert": {"account": "acme", "kind": "failures"}}
    with pytest.raises(OutboundRefused, match="allow it in accounts.acme.outbound.allow"):
        Sinks(Config()).send(sink, message)
    assert web.requests == []
    (tmp_path / "config.yaml").write_text("accounts:\n  acme:\n    outbound: {allow: ['127.0.0.1']}\n")
    Sinks(load_config(tmp_path / "config.yaml")).send(sink, message)
    Sinks(load_config(tmp_path / "config.yaml")).send({"type": "slack", "url": f"{web.url}/slack"}, message)
    assert [r.path for r in web.requests] == ["/alerts", "/slack"]
    with pytest.raises(OutboundRefused, match="accounts.globex.outbound.allow"):  # another account's alert
        Sinks(load_config(tmp_path / "config.yaml")).send(sink, {**message, "alert": {"account": "globex"}})


def test_a_payload_chosen_url_cannot_reach_an_internal_port_through_the_api(tmp_path: Path, store_url: str,
                                                                             web: HttpServer, admin: HttpServer) -> None:
    """A signed webhook whose body picks the URL: the admin port is refused, and the API shows why, not its answer."""
    with http_kit(tmp_path, store_url, config=only(f"127.0.0.1:{port_of(web)}")) as h:
        h.kit.deploy({WF.format("relay"): wf("relay", "    - {id: fetch, type: http.request, "
                                                      "url: '{{ trigger.body.url }}'}\n", WEBHOOK)})
        ids = []
        for url in (f"http://127.0.0.1:{port_of(admin)}/secret", f"http://2130706433:{port_of(admin)}/secret",
                    f"http://[::ffff:127.0.0.1]:{port_of(admin)}/secret", f"{web.url}/fine"):
            answer = h.hook("acme/relay", {"url": url})
            assert answer.status_code == 202, answer.get_json()
            ids.append(answer.get_json()["execution_id"])
        h.kit.engine.run_until_idle()
        shown = [h.client.get(f"/api/v1/executions/{i}", headers=h.auth(h.admin())).get_json() for i in ids]
    assert [s["status"] for s in shown] == ["failed", "failed", "failed", "succeeded"]
    assert all("loopback" in s["steps"][0]["error"] for s in shown[:3])
    assert "hunter2" not in json.dumps(shown) and admin.requests == []
    assert [r.path for r in web.requests] == ["/fine"]


# -- dry run, check, validate, sync -------------------------------------------------------------------


def dry_run(actions: str, policy: OutboundPolicy | None = None, directory: Any = None) -> dict[str, Any]:
    runner = DryRunner(account="acme", directory=directory or SyntheticDirectory(), definitions=lambda _: None,
                       now=lambda: NOW, outbound=policy)
    definition = {"spec": {"trigger": {"type": "manual"}, "actions": json.loads(actions)}}
    return runner.run("probe", definition, trigger={"type": "manual"}).view()


def test_dry_run_reports_what_would_be_refused_without_calling_or_resolving(web: HttpServer) -> None:
    """The dry run judges with the same function: metadata and loopback (any spelling) fail their step,
    an allowed address and an unresolved name pass; no request is made and no name is looked up."""
    cases = {"http://169.254.169.254/latest/meta-data": "cloud metadata is never called",
             f"{web.url}/x": "127.0.0.1 is a loopback address", "http://2130706433/": "2130706433 is 127.0.0.1, a loopback address",
             "http://localhost/": "localhost", "http://[fd00:ec2::254]/": "cloud metadata"}
    for url, reason in cases.items():
        result = dry_run(json.dumps([{"id": "c", "type": "http.request", "url": url}]))
        assert result["status"] == "failed" and reason in result["error"] and result["intents"] == []
    allowed = dry_run(json.dumps([{"id": "c", "type": "http.request", "url": f"{web.url}/x"}]), LOOPBACK)
    assert allowed["status"] == "succeeded" and allowed["intents"][0]["url"] == f"{web.url}/x"
    masked = dry_run(json.dumps([{"id": "c", "type": "http.request", "url": "https://crm.example/",
                                  "headers": {"Authorization": "Bearer dry-s3cret", "Accept": "*/*"}}]))
    assert masked["intents"][0]["headers"] == masked["steps"][0]["input"]["headers"] == \
        {"Authorization": "***", "Accept": "*/*"}
    assert "dry-s3cret" not in json.dumps(masked)
    unresolved = dry_run(json.dumps([{"id": "c", "type": "http.request", "url": "http://no-such-host.invalid/"}]))
    assert unresolved["status"] == "succeeded"
    posted = dry_run(json.dumps([{"id": "p", "type": "channel.post", "channel": "channel:C1", "text": "hi"}]),
                     directory=Channels(C1=f"{web.url}/hook"))
    assert posted["status"] == "failed" and "loopback" in posted["error"]
    assert web.requests == []


def check_repo(tmp_path: Path, url: str) -> Path:
    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {WF.format("crm"): wf("crm", call(url))}, "add crm")
    return repo


def test_wfctl_check_dry_runs_under_the_configured_policy(tmp_path: Path) -> None:
    """`wfctl check` fails the case of a call the configuration does not allow, and passes it once allowed."""
    repo = check_repo(tmp_path, "http://10.20.30.40:8080/crm")
    config = tmp_path / "config.yaml"
    config.write_text("")
    base = ["--repo", str(repo), "--data-dir", str(tmp_path / "data"), "--config", str(config), "check"]
    refused = CliRunner().invoke(cli, base)
    assert refused.exit_code == 1 and "10.20.30.40 is a private address" in refused.output
    config.write_text("accounts:\n  acme:\n    outbound: {allow: ['10.0.0.0/8']}\n")
    allowed = CliRunner().invoke(cli, base)
    assert allowed.exit_code == 0, allowed.output
    metadata = check_repo(tmp_path / "metadata", "http://169.254.169.254/latest/meta-data")
    refused = CliRunner().invoke(cli, ["--repo", str(metadata), "--data-dir", str(tmp_path / "data"), "check"])
    assert refused.exit_code == 1
    assert f"{WF.format('crm')}:8:51: spec.actions[0].url: outbound call to 169.254.169.254:80" in refused.output


def validate(repo: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--repo", str(repo), "validate", *args])


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data", "http://[::ffff:169.254.169.254]/x",
                                 "http://2852039166/latest", "http://metadata.google.internal/computeMetadata/v1/"])
def test_validate_reports_a_literal_metadata_url_at_its_line(tmp_path: Path, url: str) -> None:
    """A static metadata URL can never be allowed: a definition problem at path:line:col of the url."""
    result = validate(check_repo(tmp_path, url))
    assert result.exit_code == 1
    assert f"{WF.format('crm')}:8:51: spec.actions[0].url: outbound call to " in result.stdout
    assert "cloud metadata" in result.stdout


def test_validate_warns_of_a_literal_address_the_configuration_may_allow(tmp_path: Path) -> None:
    """A literal private or loopback URL is a warning (validate does not read the allow-list); templates are
    judged at run time."""
    result = validate(check_repo(tmp_path, "http://127.0.0.1:9/crm"), "--format", "json")
    body = json.loads(result.stdout)
    assert result.exit_code == 0 and body["valid"] and body["problems"] == []
    [warning] = body["warnings"]
    assert (warning["line"], warning["field"]) == (8, "spec.actions[0].url") and "loopback" in warning["message"]
    templated = validate(check_repo(tmp_path / "t", "{{ trigger.body.url }}"), "--format", "json")
    assert json.loads(templated.stdout)["warnings"] == []
    text = validate(tmp_path / "repo")
    assert text.exit_code == 0 and f"\nwarning: {WF.format('crm')}:8:51: spec.actions[0].url: " in text.stderr
    github = validate(tmp_path / "repo", "--format", "github")
    assert github.stdout.startswith(f"::warning file={WF.format('crm')},line=8,col=51::spec.actions[0].url: ")


def test_validate_with_a_directory_refuses_a_channel_webhook_on_metadata(tmp_path: Path) -> None:
    """A referenced channel whose webhook_url is a metadata address is a problem at the channel field."""
    repo = tmp_path / "repo"
    post = "    - {id: page, type: channel.post, channel: 'channel:C1', text: hi}\n"
    commit_files(make_repo(repo), {WF.format("page"): wf("page", post)}, "add")
    folder = tmp_path / "directories"
    folder.mkdir()
    (folder / "acme.yaml").write_text("channels:\n  - {id: C1, name: x, webhook_url: 'http://169.254.169.254/x'}\n")
    result = validate(repo, "--directory", str(folder))
    assert result.exit_code == 1
    assert "spec.actions[0].channel: channel:C1's webhook_url: outbound call to 169.254.169.254:80" in result.stdout


def test_sync_keeps_a_metadata_url_out_of_the_store(tmp_path: Path, store_url: str) -> None:
    """The reconciler applies the same rule: the workflow is Invalid and never runs."""
    with kit(tmp_path, store_url) as k:
        k.deploy({WF.format("crm"): wf("crm", call("http://169.254.169.254/latest/meta-data"))})
        status = _status(k, "acme/crm")
        with pytest.raises(WfcError, match="acme/crm has no valid version to run .*cloud metadata address"):
            k.run("acme/crm")
    assert (status["sync"], status["version"]) == ("Invalid", None)
    assert f"{WF.format('crm')}:8:51: spec.actions[0].url: outbound call to 169.254.169.254:80" in status["message"]


def _status(k: Kit, key: str) -> dict[str, Any]:
    from controller.store import views

    with k.store.read() as conn:
        return views.workflow(conn, key)


# -- secret headers -----------------------------------------------------------------------------------


def test_secret_header_names() -> None:
    secret = ["Authorization", "proxy-authorization", "Cookie", "Set-Cookie", "X-Api-Key", "X-Auth-Token",
              "X-Hub-Signature-256", "X-Client-Secret", "X-Password", "X-Session-Id"]
    plain = ["Content-Type", "Accept", "X-Trace", "User-Agent", "Idempotency-Key"]
    assert [n for n in secret if not secret_header(n)] == [] and [n for n in plain if secret_header(n)] == []
    assert masked_headers({"Authorization": "Bearer x", "Accept": "*/*"}) == {"Authorization": "***", "Accept": "*/*"}


def test_secret_headers_are_sent_but_never_stored(tmp_path: Path, store_url: str, web: HttpServer) -> None:
    """The call carries the real values; the stored input and the output's response headers, read through
    the API, show ``***`` and hold no secret anywhere."""
    web.respond("/crm", headers={"Set-Cookie": "session=srv-cookie-77", "X-Request-Id": "r1"})
    headers = "{Authorization: 'Bearer tok-s3cr3t', X-Api-Key: key-abc-123, X-Trace: visible}"
    with http_kit(tmp_path, store_url) as h:
        h.kit.deploy({WF.format("crm"): wf("crm", call(f"{web.url}/crm", f", headers: {headers}"))})
        execution = h.kit.run("acme/crm")
        shown = h.client.get(f"/api/v1/executions/{execution}", headers=h.auth(h.admin())).get_json()
    [sent] = web.requests
    assert (sent.headers["Authorization"], sent.headers["X-Api-Key"]) == ("Bearer tok-s3cr3t", "key-abc-123")
    step = shown["steps"][0]
    assert step["status"] == "succeeded"
    assert step["input"]["headers"] == {"Authorization": "***", "X-Api-Key": "***", "X-Trace": "visible"}
    assert step["output"]["headers"]["Set-Cookie"] == "***" and step["output"]["headers"]["X-Request-Id"] == "r1"
    text = json.dumps(shown)
    assert not any(secret in text for secret in ("tok-s3cr3t", "key-abc-123", "srv-cookie-77"))


def test_the_action_records_its_input_masked() -> None:
    """http.request's recorded view masks the header values and leaves the rest of the input alone."""
    inputs = {"url": "https://crm.example/", "headers": {"Cookie": "a=b", "Accept": "x"}, "json": {"k": 1}}
    assert http_request.recorded(inputs) == {**inputs, "headers": {"Cookie": "***", "Accept": "x"}}
    assert http_request.recorded({"url": "u"}) == {"url": "u"}


# -- configuration ------------------------------------------------------------------------------------


def test_configuration_has_a_global_policy_and_accounts_replace_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ALLOW_LOOPBACK + "  max_response_bytes: 2048\n  timeout: 30s\n  max_redirects: 2\n"
                    "accounts:\n  globex:\n    outbound: {allow: ['intranet.example:8443'], allow_downgrade: true}\n")
    config = load_config(path)
    acme, globex = config.outbound("acme"), config.outbound("globex")
    assert ([a.text for a in acme.allow], acme.max_response_bytes, acme.timeout, acme.max_redirects) == \
        (["127.0.0.1"], 2048, 30.0, 2)
    assert ([a.text for a in globex.allow], globex.max_response_bytes, globex.allow_downgrade) == \
        (["intranet.example:8443"], 2048, True)
    assert (acme.account, globex.account) == ("acme", "globex")
    assert Config().outbound("acme").allow == ()  # no configuration: public addresses only


def test_a_bad_allow_entry_is_a_located_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("outbound:\n  allow: ['127.0.0.1', 'not a host']\n")
    with pytest.raises(UsageError, match=r"config.yaml:2:3: outbound.allow: 'not a host' is not a host, address or CIDR"):
        load_config(path)


def test_live_effects_default_to_public_addresses_only(tmp_path: Path, web: HttpServer) -> None:
    """LiveEffects made without a client refuse loopback: the guard is on unless a policy says otherwise."""
    effects = LiveEffects(data_dir=tmp_path, records=None)  # type: ignore[arg-type]  # (no record is written)
    context = ActionContext(account="acme", workflow="acme/x", action_id="c", now=NOW,
                            directory=Channels(C1=f"{web.url}/h"), effects=effects)
    with pytest.raises(OutboundRefused):
        http_request.run({"url": f"{web.url}/x"}, context)
    with pytest.raises(OutboundRefused):
        channel_post.run({"channel": "channel:C1", "text": "hi"}, context)
    assert web.requests == []
