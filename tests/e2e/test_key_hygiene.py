"""Key hygiene through the real Envoy: keys limited to source networks (refused with 403
from elsewhere, recorded in the audit trail as a security event; allowed from 127.0.0.1/32),
invalid networks refused at creation, and `last_used_at` written by the server within
seconds of a use (batched off the hot path)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import Stack, assert_refused, fooocus_text_to_image, key_id, wait_until

T2I = "/v1/generation/text-to-image"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("keyhygiene"), audit={"file": "audit.jsonl", "checkpoint_every": "1s"})
    s.start()
    try:
        s.user = s.create_user("designer_basic")
        yield s
    finally:
        s.stop()


def create_limited_key(stack, *networks: str, check: bool = True):
    args = ["--name", stack.unique("net"), "--user", stack.user]
    for n in networks:
        args += ["--allow-network", n]
    proc = stack.cli("keys", "create", args=args, check=check)
    return proc.stdout.strip() if check else proc


def audit_records(stack) -> list[dict]:
    records = []
    for path in sorted(Path(stack.dir).glob("audit*.jsonl*")):
        for line in path.read_text().splitlines():
            line = line.strip()
            if line.startswith("{"):
                records.append(json.loads(line))
    return records


def test_a_key_limited_elsewhere_is_refused_and_recorded(stack, upstream):
    key = create_limited_key(stack, "10.0.0.0/8", "2001:db8::/32")
    r = stack.post(T2I, fooocus_text_to_image(), key=key)
    body = assert_refused(r, 403, upstream)
    assert body["error"] == "key_network_not_allowed", body
    assert "127.0.0.1" in body["reason"], body

    def recorded():
        return [
            rec for rec in audit_records(stack)
            if rec.get("event_type") == "decision" and rec.get("error") == "key_network_not_allowed"
            and rec.get("key_id") == key_id(key)
        ]

    wait_until(lambda: recorded(), 10, "the refusal in the audit trail")
    rec = recorded()[0]
    assert rec["result"] == "deny", rec
    assert rec.get("security_event") == "key_network_refused", rec
    assert rec.get("severity") == "medium", rec
    assert key_id(key) in json.dumps(rec) and key not in json.dumps(rec), "the id, never the key"


def test_a_key_limited_to_loopback_works_from_loopback(stack, upstream):
    key = create_limited_key(stack, "127.0.0.1/32")
    r = stack.post(T2I, fooocus_text_to_image(), key=key)
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
    assert upstream.only().headers.get("x-inferguard-key-id") == key_id(key)
    listed = {k["id"]: k for k in stack.list_keys()}
    assert listed[key_id(key)]["allowed_networks"] == ["127.0.0.1/32"]


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "10.0.0.0/33", "not-a-network", "10.0.0.0/"])
def test_invalid_networks_are_refused_at_creation(stack, bad):
    before = len(stack.list_keys())
    proc = create_limited_key(stack, bad, check=False)
    assert proc.returncode != 0
    assert "--allow-network" in proc.stderr and proc.stdout.strip() == "", proc.stderr
    assert len(stack.list_keys()) == before, "nothing stored"


def test_last_use_is_recorded_within_seconds(stack, upstream):
    key = stack.create_key(user=stack.user)
    unused = stack.create_key(user=stack.user)

    def last_used(k):
        return {x["id"]: x for x in stack.list_keys()}[key_id(k)]["last_used_at"]

    assert last_used(key) is None
    started = time.monotonic()
    r = stack.post(T2I, fooocus_text_to_image(), key=key)
    assert r.status_code == 200, r.text[:300]
    wait_until(lambda: last_used(key) is not None, 15, "last_used_at in keys list")
    took = time.monotonic() - started
    assert took < 12, f"last use took {took:.1f}s to appear"
    assert last_used(unused) is None
    report = json.loads(stack.cli("report", "keys", args=["--format", "json"]).stdout)
    row = {x["id"]: x for x in report}[key_id(key)]
    assert row["last_used"], row
