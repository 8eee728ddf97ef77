"""OpenTelemetry export (audit.otlp) against a real OTLP collector (rotel): audit events arrive as
OTLP logs with the event's fields as attributes, each Check as a span joining the caller's W3C
trace, and records made while the collector is down arrive once it is back — while every
decision is still answered at once and written to the local trail."""

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import fooocus_text_to_image, free_ports, running_stack, wait_until

T2I = "/v1/generation/text-to-image"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


def rotel_bin() -> Path:
    """rotel/rotel-agent from the `rotel` wheel (tests/e2e/requirements.txt)."""
    import rotel

    path = Path(rotel.__file__).parent / "rotel-agent"
    assert os.access(path, os.X_OK), f"{path} is not executable (scripts/install-test-tools)"
    return path


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Rotel:
    """One rotel-agent daemon on loopback, printing what it receives to `log`."""

    def __init__(self, workdir: Path):
        self.bin = rotel_bin()
        self.grpc_port, self.http_port = free_ports(2)
        self.log = workdir / "rotel.log"
        self.pid_file = workdir / "rotel.pid"

    def start(self):
        subprocess.run(
            [
                str(self.bin), "start",
                "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
                "--exporter", "blackhole",
                "--debug-log", "logs", "--debug-log", "traces",
                "--debug-log-verbosity", "detailed",
                "--log-file", str(self.log), "--pid-file", str(self.pid_file), "--daemon",
            ],
            check=True, timeout=10, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.grpc_port), 10, "rotel's OTLP/gRPC receiver")

    def stop(self):
        if not self.pid_file.exists():
            return
        pid = int(self.pid_file.read_text().strip())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return

        def gone():
            try:
                os.kill(pid, 0)
                return False
            except ProcessLookupError:
                return True

        wait_until(gone, 10, "rotel to exit")
        self.pid_file.unlink(missing_ok=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture(scope="module")
def rotel(tmp_path_factory):
    r = Rotel(tmp_path_factory.mktemp("rotel"))
    r.start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def otlp_stack(tmp_path_factory, rotel):
    audit = {
        "file": "audit.jsonl",
        "otlp": {
            "endpoint": f"http://127.0.0.1:{rotel.grpc_port}",
            "protocol": "grpc",
            "timeout_ms": 1000,
            "queue_size": 1000,
            "service_name": "inferguard-e2e",
        },
    }
    with running_stack(tmp_path_factory.mktemp("stack"), audit=audit) as s:
        s.extra_logs.append(("rotel", rotel.log))
        yield s


def trail_records(stack) -> list[dict]:
    out = []
    for f in sorted(stack.dir.glob("audit-*.jsonl")):
        if f.name.endswith(".checkpoints.jsonl"):
            continue
        out.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
    return out


ATTR = re.compile(r"^\s+-> ([\w.]+): (\w+)\((.*)\)$")
FIELD = re.compile(r"^\s*([A-Z][A-Za-z ]*?)\s*: ?(.*)$")
BLOCK_END = re.compile(r"^(LogRecord #|Span #|Resource|Scope)|\x1b")


def blocks(text: str, header: str) -> list[dict]:
    """The records rotel printed (`LogRecord #n` or `Span #n` blocks): their fields
    (`SeverityText`, `Body`, `Trace ID`, `Parent ID`, `Name`, …) and an `attrs` dict."""
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith(header):
            continue
        rec: dict = {"attrs": {}}
        for nxt in lines[i + 1:]:
            if BLOCK_END.search(nxt):
                break
            if m := ATTR.match(nxt):
                rec["attrs"][m.group(1)] = m.group(3)
            elif m := FIELD.match(nxt):
                rec[m.group(1)] = m.group(2).strip()
        out.append(rec)
    return out


def log_record(rotel, request_id: str) -> dict:
    found = [r for r in blocks(rotel.text(), "LogRecord #") if r["attrs"].get("request_id") == request_id]
    assert len(found) == 1, f"{len(found)} log records for {request_id}:\n{rotel.text()[-4000:]}"
    return found[0]


def span(rotel, request_id: str) -> dict:
    found = [s for s in blocks(rotel.text(), "Span #")
             if s["attrs"].get("inferguard.request_id") == request_id]
    assert len(found) == 1, f"{len(found)} spans for {request_id}:\n{rotel.text()[-4000:]}"
    return found[0]


def arrived(rotel, request_ids: set[str]) -> bool:
    """Both the log records and the spans of these requests are at the collector (logs and
    spans are exported by separate queues, so one may arrive before the other)."""
    text = rotel.text()
    logs = {r["attrs"].get("request_id") for r in blocks(text, "LogRecord #")}
    spans = {s["attrs"].get("inferguard.request_id") for s in blocks(text, "Span #")}
    return request_ids <= logs and request_ids <= spans


def wait_for_text(rotel, needles: list[str], timeout: float, what: str):
    wait_until(lambda: all(n in rotel.text() for n in needles), timeout, what, interval=0.2)


def test_decisions_arrive_as_logs_and_spans(otlp_stack, rotel):
    stack = otlp_stack
    user = stack.create_user("designer_basic", "otel-alice")
    key = stack.create_key(user=user, name="otel-k1")

    ok = stack.post(T2I, fooocus_text_to_image(), key=key, headers={
        "x-request-id": "otel-allow-1",
        "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01",
    })
    assert ok.status_code == 200, ok.text
    refused = stack.post(T2I, fooocus_text_to_image(performance_selection="Quality"), key=key,
                         headers={"x-request-id": "otel-deny-1"})
    assert refused.status_code == 403, refused.text

    wait_until(lambda: arrived(rotel, {"otel-allow-1", "otel-deny-1"}), 15,
               "the records and spans at the collector", interval=0.2)
    allow = log_record(rotel, "otel-allow-1")
    assert allow["Body"] == "Str(decision)" and allow["SeverityText"] == "INFO", allow
    assert allow["attrs"]["user_id"] == "otel-alice"
    assert allow["attrs"]["result"] == "allow"
    assert allow["attrs"]["event_type"] == "decision"
    assert allow["attrs"]["auth_method"] == "api_key"
    assert allow["attrs"]["preset"] == "Speed"
    deny = log_record(rotel, "otel-deny-1")
    assert deny["SeverityText"] == "WARN", deny
    assert deny["attrs"]["user_id"] == "otel-alice"
    assert deny["attrs"]["result"] == "deny"
    assert deny["attrs"]["error"] == "preset_not_allowed"
    assert "Quality" in deny["attrs"]["reason"]
    assert deny["attrs"]["status"] == "403"
    # No secret leaves: the key's id is there, never the key.
    assert key not in rotel.text()

    # One span per Check; the allowed one joined the caller's trace (Envoy passed traceparent on).
    s = span(rotel, "otel-allow-1")
    assert s["Name"] == "ext_authz.Check" and s["Trace ID"] == TRACE_ID and s["Parent ID"] == PARENT_SPAN, s
    assert s["attrs"]["inferguard.result"] == "allow"
    d = span(rotel, "otel-deny-1")
    assert d["attrs"]["inferguard.reason"] == "preset_not_allowed"
    assert d["attrs"]["http.response.status_code"] == "403"
    assert d["Trace ID"] != TRACE_ID

    # The local trail holds both decisions too.
    ids = {r.get("request_id") for r in trail_records(stack)}
    assert {"otel-allow-1", "otel-deny-1"} <= ids


def test_records_made_while_the_collector_is_down_arrive_later(otlp_stack, rotel):
    stack = otlp_stack
    user = stack.create_user("designer_basic", "otel-bob")
    key = stack.create_key(user=user, name="otel-k2")
    rotel.stop()
    assert not port_open(rotel.grpc_port)

    # Decisions are answered at once, with the right statuses, while the collector is down.
    started = time.monotonic()
    ok = stack.post(T2I, fooocus_text_to_image(), key=key, headers={"x-request-id": "otel-down-allow"})
    assert ok.status_code == 200, ok.text
    refused = stack.post(T2I, fooocus_text_to_image(performance_selection="Quality"), key=key,
                         headers={"x-request-id": "otel-down-deny"})
    assert refused.status_code == 403, refused.text
    assert time.monotonic() - started < 5
    ids = {r.get("request_id") for r in trail_records(stack)}
    assert {"otel-down-allow", "otel-down-deny"} <= ids

    time.sleep(1.5)  # let the exporter try (and fail) at least once
    assert "otel-down-allow" not in rotel.text()
    rotel.start()  # same ports
    wait_until(lambda: arrived(rotel, {"otel-down-allow", "otel-down-deny"}), 20,
               "the records buffered while the collector was down", interval=0.2)
    assert log_record(rotel, "otel-down-allow")["attrs"]["user_id"] == "otel-bob"
    assert log_record(rotel, "otel-down-deny")["attrs"]["result"] == "deny"
    wait_for_text(rotel, ["inferguard.request_id: Str(otel-down-allow)", "inferguard.request_id: Str(otel-down-deny)"],
                  10, "the spans buffered while the collector was down")
    span(rotel, "otel-down-allow")
    assert span(rotel, "otel-down-deny")["attrs"]["inferguard.result"] == "deny"
