"""A real OpenID Provider for the JWT tests, and tools to forge tokens.

`OpenIDProvider` runs tests/oidc/provider.mjs (npm `oidc-provider`, installed by
scripts/install-test-tools) on loopback. Its tokens come from its real token endpoint:

* `token("alice", alg="ES256")` — the OP's custom test grant (`urn:inferguard:test:user`): `sub`
  is the username, `email`/`groups`/`department` come from the OP's user directory
  (`set_user`), `aud` is `inferguard` (or `other-api` with `audience="other-api"`), signed with
  RS256, PS256, ES256 or EdDSA by the OP's own keys.
* `client_credentials_token()` — the standard client_credentials grant (`sub` = client id).

`rotate(keep_old=...)` makes the OP sign with a new RSA key under a new `kid` without restarting
it; `signing_keys()` hands out the OP's private keys so a test can sign tokens the OP would never
issue (expired, not yet valid, wrong issuer) with the issuer's real key; `forge`/`unsigned`/
`hs256` build hostile tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

from conftest import POLICY_YAML, REPO, assert_refused, free_ports, tail, wait_until

OIDC_DIR = REPO / "tests" / "oidc"
CLIENT_ID = "inferguard-tests"
CLIENT_SECRET = "inferguard-tests-secret-0123456789"
SERVICE_CLIENT_ID = "svc-batch"
SERVICE_CLIENT_SECRET = "svc-batch-secret-0123456789"
USER_GRANT = "urn:inferguard:test:user"
ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")


def node_bin() -> str:
    node = os.environ.get("NODE_BIN") or shutil.which("node")
    if not node:
        pytest.fail("node not found: the OpenID Provider of the JWT tests needs node 20 (apt-get install nodejs)")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(f"{OIDC_DIR}/node_modules/oidc-provider is missing: run scripts/install-test-tools")
    return node


class OpenIDProvider:
    """One oidc-provider process on 127.0.0.1:<free port>; issuer http://127.0.0.1:<port>."""

    def __init__(self, workdir: Path, name: str = "op"):
        self.port = free_ports(1)[0]
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.http = requests.Session()

    def start(self) -> "OpenIDProvider":
        log = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [node_bin(), str(OIDC_DIR / "provider.mjs"), "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=OIDC_DIR,
        )
        log.close()

        def discovery_ok():
            r = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1)
            return r.status_code == 200 and r.json()["issuer"] == self.issuer

        wait_until(discovery_ok, 20, f"the OpenID Provider on {self.issuer}", 0.1, self.proc, self.log)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()

    def tail(self) -> str:
        return tail(self.log, 30)

    # --- tokens from the OP's token endpoint

    def _token(self, data: dict, client_id: str, secret: str) -> str:
        r = self.http.post(f"{self.issuer}/token", data=data, auth=(client_id, secret), timeout=10)
        assert r.status_code == 200, f"the OP refused to issue a token ({data}): {r.status_code} {r.text}\n{self.tail()}"
        body = r.json()
        assert body["token_type"] == "Bearer", body
        return body["access_token"]

    def token(self, username: str, alg: str = "RS256", audience: str = "inferguard") -> str:
        """An access token for a user of the OP's directory, signed by the OP with `alg`."""
        resource = f"urn:{audience}:{alg}"
        return self._token({"grant_type": USER_GRANT, "username": username, "resource": resource},
                           CLIENT_ID, CLIENT_SECRET)

    def client_credentials_token(self, alg: str = "RS256") -> str:
        """A standard client_credentials token for the service client (`sub` = its client id)."""
        return self._token({"grant_type": "client_credentials", "resource": f"urn:inferguard:{alg}"},
                           SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET)

    # --- the test-only admin endpoints

    def _admin(self, method: str, path: str, body=None) -> dict:
        r = self.http.request(method, f"{self.issuer}/__test/{path}", json=body, timeout=10)
        assert r.status_code == 200, f"OP admin {method} {path}: {r.status_code} {r.text}"
        return r.json()

    def set_user(self, username: str, *, groups: list[str], email: str | None = None, department: str = "design"):
        self._admin("POST", "users", {"username": username, "email": email or f"{username}@example.com",
                                      "groups": groups, "department": department})

    def rotate(self, keep_old: bool) -> dict:
        """A new RSA signing key with a new kid; the old public key stays published only with
        keep_old. Returns {"kid", "previous_kid", "published"}."""
        return self._admin("POST", "rotate", {"keep_old": keep_old})

    def signing_keys(self) -> dict:
        """The OP's private JWKs: {"rsa": jwk, "retired_rsa": [...], "ec": jwk, "ed": jwk}."""
        return self._admin("GET", "keys")

    def jwks_fetches(self) -> list[float]:
        """When the OP's JWKS was fetched (seconds since the epoch)."""
        return [ms / 1000 for ms in self._admin("GET", "fetches")["jwks"]]

    def jwks(self) -> dict:
        return self.http.get(f"{self.issuer}/jwks", timeout=5).json()

    def rsa_public(self) -> tuple[dict, bytes]:
        """The OP's current RSA public JWK, as published, and its PEM (what anyone can
        download)."""
        jwk = next(k for k in self.jwks()["keys"] if k["kty"] == "RSA")
        pem = RSAAlgorithm.from_jwk(json.dumps(jwk)).public_bytes(
            encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return jwk, pem


def jwt_identity(*ops: OpenIDProvider) -> dict:
    """The `identity:` section trusting these OPs (keys by OIDC discovery), plus API keys."""
    return {
        "api_keys": {"headers": ["x-api-key"]},
        "jwt": [
            {"issuer": op.issuer, "audiences": ["inferguard"], "claims": {"attributes": {"department": "department"}}}
            for op in ops
        ],
    }


# The e2e policy plus the IdP group mapping.
OIDC_POLICY_YAML = POLICY_YAML.replace(
    "default_role: viewer\n",
    "default_role: viewer\n"
    "groups: {fooocus_designers_basic: designer_basic, fooocus_designers_advanced: designer_advanced,"
    " fooocus_admins: admin}\n",
)
assert "groups:" in OIDC_POLICY_YAML


# --------------------------------------------------------------------------------------------
# Forging


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def claims_for(issuer: str, sub: str = "mallory", *, groups=("fooocus_admins",), lifetime: int = 600, **extra) -> dict:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": sub,
        "aud": "inferguard",
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "email": f"{sub}@example.com",
        "groups": list(groups),
        "department": "design",
    }
    claims.update(extra)
    return claims


def private_key(jwk: dict):
    """A cryptography private key from a private JWK."""
    text = json.dumps(jwk)
    kty = jwk["kty"]
    if kty == "RSA":
        return RSAAlgorithm.from_jwk(text)
    if kty == "EC":
        return ECAlgorithm.from_jwk(text)
    if kty == "OKP":
        return OKPAlgorithm.from_jwk(text)
    raise ValueError(kty)


def forge(claims: dict, key: dict, alg: str, kid: str | None = "use-jwk", **header) -> str:
    """Signs `claims` (any JSON, unchecked) with the private JWK `key` using PyJWT's algorithm
    implementations; `kid` defaults to the key's own, None leaves it out; `header` adds fields."""
    headers = {"alg": alg, "typ": "at+jwt", **header}
    if kid == "use-jwk":
        kid = key.get("kid")
    if kid is not None:
        headers["kid"] = kid
    signing_input = f"{b64json(headers)}.{b64json(claims)}"
    signature = get_default_algorithms()[alg].sign(signing_input.encode(), private_key(key))
    return f"{signing_input}.{b64url(signature)}"


def unsigned(claims: dict, **header) -> str:
    """An `alg: none` token (empty signature)."""
    return f"{b64json({'alg': 'none', 'typ': 'JWT', **header})}.{b64json(claims)}."


def hs256(claims: dict, secret: bytes, **header) -> str:
    """An HS256 token with `secret` as the HMAC key (built by hand: PyJWT rightly refuses to use
    a PEM public key as an HMAC secret)."""
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT', **header})}.{b64json(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def header_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))


def claims_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


# --------------------------------------------------------------------------------------------
# Refusals, through Envoy and over gRPC


def assert_invalid_token(resp, upstream=None) -> dict:
    """401, `WWW-Authenticate: Bearer … error="invalid_token"`, the JSON refusal body with
    error `invalid_token`, and nothing reached the upstream."""
    body = assert_refused(resp, 401, upstream)
    www = resp.headers.get("WWW-Authenticate", "")
    assert "Bearer" in www and 'error="invalid_token"' in www, f"WWW-Authenticate: {www!r}"
    assert body["error"] == "invalid_token", body
    return body


def grpc_check_request(path: str, headers: dict, raw_body: bytes = b"", method: str = "POST"):
    """A CheckRequest as Envoy sends it for `method path` with these headers."""
    req = external_auth_pb2.CheckRequest()
    attrs = req.attributes
    attrs.source.address.socket_address.address = "127.0.0.1"
    attrs.source.address.socket_address.port_value = 50000
    http = attrs.request.http
    http.id = uuid.uuid4().hex
    http.method = method
    http.path = path
    http.host = "127.0.0.1:10000"
    http.scheme = "http"
    http.protocol = "HTTP/1.1"
    all_headers = {":authority": "127.0.0.1:10000", ":method": method, ":path": path, ":scheme": "http",
                   "content-type": "application/json", "x-request-id": http.id}
    all_headers.update(headers)
    for k, v in all_headers.items():
        http.headers[k] = v
    http.raw_body = raw_body
    http.size = len(raw_body)
    return req


def grpc_check(stack, req):
    return external_auth_pb2_grpc.AuthorizationStub(stack.grpc_channel()).Check(req, timeout=10)


def grpc_denial(resp) -> tuple[int, dict, dict]:
    """(HTTP status, lower-cased headers, JSON body) of a denied CheckResponse."""
    assert resp.status.code != 0 and resp.WhichOneof("http_response") == "denied_response", f"not a denial: {resp}"
    d = resp.denied_response
    headers = {h.header.key.lower(): h.header.value for h in d.headers}
    return d.status.code, headers, json.loads(d.body)


def send_huge_header(port: int, path: str, name: str, value: str, body: bytes, timeout: float = 30.0) -> int:
    """POSTs with one huge header, writing the head in chunks and stopping as soon as the
    server answers (Envoy answers 431 after 96 KiB and closes). Returns the status code."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{name}: {value}\r\n\r\n").encode() + body
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.setblocking(False)
        view, sent = memoryview(head), 0
        deadline = time.monotonic() + timeout
        while sent < len(head):
            readable, writable, _ = select.select([s], [s], [], max(0.0, deadline - time.monotonic()))
            if readable:
                break
            if not writable:
                raise TimeoutError("the server neither read the request nor answered")
            try:
                sent += s.send(view[sent : sent + 65536])
            except (BlockingIOError, InterruptedError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        s.setblocking(True)
        s.settimeout(max(1.0, deadline - time.monotonic()))
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 "), f"no HTTP answer to a {len(value)}-byte header: {data[:100]!r}"
    return int(data.split()[1])
