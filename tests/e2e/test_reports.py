"""`inferguard report …` against a running stack with an audit trail: the key inventory shows
the key a request used (and never a secret), and the trail-based reports see the decision and
the admin changes."""

import csv
import io
import json
import uuid

import pytest

from conftest import Stack, fooocus_text_to_image, key_id

T2I = "/v1/generation/text-to-image"


@pytest.fixture(scope="module")
def rstack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("reports"), audit={"file": "audit.jsonl", "checkpoint_every": "1s"})
    try:
        s.start()
        yield s
    finally:
        s.stop()


def test_reports_read_the_store_and_the_trail(rstack):
    s = rstack
    user = s.create_user("designer_basic")
    key = s.create_key(user=user, expires_days=7)
    kid = key_id(key)
    request_id = f"rep-{uuid.uuid4()}"
    assert s.post(T2I, fooocus_text_to_image(), key=key, headers={"x-request-id": request_id}).status_code == 200

    out = s.cli("report", "keys", args=["--format", "json"]).stdout
    assert key not in out
    row = next(r for r in json.loads(out) if r["id"] == kid)
    assert row["owner"] == user and row["owner_kind"] == "user" and row["status"] == "active"
    assert row["reminder"] == "expires_soon" and row["days_until_expiry"] in (6, 7)
    assert row["last_used"] not in (None, "no trail configured")

    review = json.loads(s.cli("report", "access-review", args=["--format", "json"]).stdout)
    me = next(r for r in review if r["name"] == user)
    assert me["role"] == "designer_basic" and me["role_source"] == "binding" and me["active_keys"] == 1
    assert me["last_activity"] == row["last_used"]

    gens = list(csv.DictReader(io.StringIO(s.cli("report", "generations", args=["--since", "1d", "--format", "csv"]).stdout)))
    mine = [g for g in gens if g["request_id"] == request_id]
    assert len(mine) == 1 and mine[0]["user_id"] == user and mine[0]["key_id"] == kid and mine[0]["preset"] == "Speed"

    changes = s.cli("report", "permission-changes", args=["--since", "1d"]).stdout
    assert f"key:{kid}" in changes and "key.create" in changes and f"user:{user}" in changes


def test_trail_reports_need_a_trail(stack):
    proc = stack.cli("report", "generations", check=False)
    assert proc.returncode != 0 and "audit.file" in proc.stderr
    out = json.loads(stack.cli("report", "keys", args=["--format", "json"]).stdout)
    assert all(r["last_used"] == "no trail configured" for r in out)
