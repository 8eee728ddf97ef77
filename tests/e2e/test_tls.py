"""TLS and mutual TLS on inferguard's listeners, through the shipped front-proxy Envoy file
(envoy/front-proxy.yaml, addresses rewritten, fresh certificates from scripts/dev-certs at the
relative paths it names):

    client ─HTTPS─▶ Envoy ─mTLS─▶ inferguard ext_authz / http     (tls.* with client_ca)
                      └───mTLS──▶ stand-in inference pod (HTTPS, requires Envoy's client cert)
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import REPO, assert_refused, fooocus_text_to_image, running_stack, wait_until

FRONT_PROXY = REPO / "envoy" / "front-proxy.yaml"


def dev_certs(out: Path, ca_from: Path | None = None) -> Path:
    """Fresh certificates from the repository's script (short-lived: these are test certs)."""
    cmd = [sys.executable, str(REPO / "scripts" / "dev-certs"), "--out", str(out), "--days", "2"]
    if ca_from is not None:
        cmd += ["--ca-from", str(ca_from)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return out


def listener_tls(mutual: bool = True) -> dict:
    files = {"cert": "certs/inferguard.crt", "key": "certs/inferguard.key"}
    if mutual:
        files["client_ca"] = "certs/ca.crt"
    return files


def client_context(certs: Path, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs / "ca.crt"))
    if with_cert:
        ctx.load_cert_chain(str(certs / "envoy-client.crt"), str(certs / "envoy-client.key"))
    return ctx


def server_leaf(port: int, certs: Path, alpn: str = "h2") -> bytes:
    """The DER certificate the listener presents to a caller holding Envoy's client cert."""
    ctx = client_context(certs, with_cert=True)
    ctx.set_alpn_protocols([alpn])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="inferguard") as tls:
            return tls.getpeercert(binary_form=True)


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tls")
    certs = dev_certs(workdir / "certs")
    upstream_ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    upstream_ssl.load_cert_chain(str(certs / "inference.crt"), str(certs / "inference.key"))
    upstream_ssl.load_verify_locations(str(certs / "ca.crt"))
    upstream_ssl.verify_mode = ssl.CERT_REQUIRED  # the pod side of mutual TLS
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.crt").read_bytes(),
        private_key=(certs / "envoy-client.key").read_bytes(),
        certificate_chain=(certs / "envoy-client.crt").read_bytes(),
    )
    with running_stack(
        workdir,
        envoy_yaml=FRONT_PROXY,
        extra_config={"tls": {"ext_authz": listener_tls(), "http": listener_tls()}},
        grpc_credentials=creds,
        upstream_ssl=upstream_ssl,
    ) as s:
        s.certs = certs
        s.https = f"https://127.0.0.1:{s.envoy_port}"
        yield s


def front(s, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, s.https + path, verify=str(s.certs / "ca.crt"), timeout=30, **kw)


def test_envoy_reaches_check_over_mutual_tls_and_the_pod_over_mutual_tls(tls_stack):
    s = tls_stack
    user = s.create_user("designer_basic")
    key = s.create_key(user=user)
    s.upstream.clear()
    r = front(s, "POST", "/v1/generation/text-to-image", json=fooocus_text_to_image(), headers={"X-API-KEY": key})
    assert r.status_code == 200, r.text
    seen = s.upstream.only()
    assert seen.headers["x-inferguard-subject"] == user
    assert seen.headers["x-api-key"] != key  # the caller's key replaced by the upstream's

    # inferguard decided (its JSON refusal), so Check was reached over the mTLS hop.
    s.upstream.clear()
    r = front(s, "POST", "/v1/generation/text-to-image", json=fooocus_text_to_image())
    assert_refused(r, 401, s.upstream)
    r = front(
        s,
        "POST",
        "/v1/generation/text-to-image",
        json=fooocus_text_to_image(performance_selection="Quality"),
        headers={"X-API-KEY": key},
    )
    assert_refused(r, 403, s.upstream)


def test_auth_routes_reach_the_http_listener_over_mutual_tls(tls_stack):
    r = front(tls_stack, "GET", "/auth/jwks.json")
    assert r.status_code == 200, r.text
    assert "keys" in r.json()


def test_a_grpc_caller_without_a_client_certificate_is_refused(tls_stack):
    s = tls_stack
    # A raw TLS caller: the handshake (TLS 1.3: the server's verdict arrives as an alert on the
    # first read) is refused before any HTTP/2 byte is served.
    ctx = client_context(s.certs, with_cert=False)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", s.ext_authz_port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with ctx.wrap_socket(raw, server_hostname="inferguard") as tls:
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                data = tls.recv(1024)
                if not data:
                    raise ConnectionError("closed without serving")
                pytest.fail(f"the server answered a caller without a certificate: {data!r}")

    # A gRPC client without a certificate gets UNAVAILABLE, never an answer.
    anonymous = grpc.secure_channel(
        f"127.0.0.1:{s.ext_authz_port}", grpc.ssl_channel_credentials((s.certs / "ca.crt").read_bytes())
    )
    try:
        with pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(anonymous).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    finally:
        anonymous.close()

    # Plaintext gRPC on the TLS port gets nothing either.
    plain = grpc.insecure_channel(f"127.0.0.1:{s.ext_authz_port}")
    try:
        with pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        plain.close()

    # And the caller with Envoy's certificate is served.
    assert s.health_serving()


def test_http_listener_over_tls_serves_healthz(tls_stack):
    s = tls_stack
    url = f"https://127.0.0.1:{s.http_port}/healthz"
    client = (str(s.certs / "envoy-client.crt"), str(s.certs / "envoy-client.key"))
    r = requests.get(url, verify=str(s.certs / "ca.crt"), cert=client, timeout=5)
    assert r.status_code == 200 and r.text.strip() == "ok", r.text
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=str(s.certs / "ca.crt"), timeout=5)  # no client certificate
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{s.http_port}/healthz", timeout=5)  # plaintext


def test_replaced_certificate_files_serve_new_connections_without_a_restart(tls_stack, tmp_path):
    s = tls_stack
    pid = s.serve.pid
    before = server_leaf(s.ext_authz_port, s.certs)
    assert before == der(s.certs / "inferguard.crt")
    fresh = dev_certs(tmp_path / "new", ca_from=s.certs)
    assert der(fresh / "inferguard.crt") != before
    # The way Kubernetes updates a Secret volume: each file replaced whole (rename).
    for name in ("inferguard.key", "inferguard.crt"):
        staged = s.certs / f".{name}.new"
        staged.write_bytes((fresh / name).read_bytes())
        os.replace(staged, s.certs / name)
    want = der(fresh / "inferguard.crt")
    wait_until(lambda: server_leaf(s.ext_authz_port, s.certs) == want, 10, "ext_authz to present the new certificate")
    wait_until(
        lambda: server_leaf(s.http_port, s.certs, alpn="http/1.1") == want, 10, "http to present the new certificate"
    )
    assert s.serve.poll() is None and s.serve.pid == pid, "inferguard restarted"

    # Envoy's new connections verify the new certificate (same CA, same name) and still get
    # decisions: a fresh key proves a new Check ran.
    user = s.create_user("designer_basic")
    key = s.create_key(user=user)
    s.upstream.clear()
    deadline = time.monotonic() + 10
    while True:
        r = front(s, "POST", "/v1/generation/text-to-image", json=fooocus_text_to_image(), headers={"X-API-KEY": key})
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text


def test_unusable_tls_files_stop_the_start(tmp_path):
    """A listener never falls back to plaintext: a key that is not the certificate's is fatal."""
    certs = dev_certs(tmp_path / "certs")
    (tmp_path / "policy.yaml").write_text(
        "apis: [fooocus-api]\ndefault_role: viewer\nroles: {viewer: {permissions: [generation:view]}}\n"
    )
    (tmp_path / "inferguard.yaml").write_text(
        "listen: {ext_authz: 127.0.0.1:0, http: 127.0.0.1:0, admin: 127.0.0.1:0}\n"
        "store: {url: 'sqlite://inferguard.db?mode=rwc'}\n"
        "policy: {file: policy.yaml}\n"
        "tls: {ext_authz: {cert: certs/inferguard.crt, key: certs/inference.key}}\n"
    )
    assert certs.exists()
    from conftest import inferguard_bin

    proc = subprocess.run(
        [str(inferguard_bin()), "serve", "--config", str(tmp_path / "inferguard.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "tls.ext_authz" in proc.stderr and "inference.key" in proc.stderr, proc.stderr
    assert "BEGIN" not in proc.stderr  # no key material in messages


def test_the_stand_in_pod_requires_a_client_certificate(tls_stack):
    """So the 200s above prove Envoy presented its certificate to the pod."""
    s = tls_stack
    url = f"https://127.0.0.1:{s.upstream.port}/v1/generation/text-to-image"
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(url, json={}, verify=str(s.certs / "ca.crt"), timeout=5)


def test_policy_check_reads_the_tls_section(tmp_path):
    from conftest import inferguard_bin

    good = tmp_path / "inferguard.yaml"
    good.write_text(
        "policy: {file: policy.yaml}\n"
        "tls:\n"
        "  ext_authz: {cert: certs/a.crt, key: certs/a.key, client_ca: certs/ca.crt}\n"
        "  http: {cert: certs/a.crt, key: certs/a.key}\n"
    )
    proc = subprocess.run([str(inferguard_bin()), "policy", "check", str(good)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy: {file: policy.yaml}\ntls:\n  ext_authz: {cert: a.crt, key: a.key, clientca: ca.crt}\n")
    proc = subprocess.run([str(inferguard_bin()), "policy", "check", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "clientca" in proc.stderr, proc.stderr
