"""Requests inferguard refuses: exact status, the JSON body of DESIGN.md, and nothing reaches the
inference server."""

import contextlib
import json
import sqlite3
import time

import pytest

from conftest import (
    assert_refused,
    fake_image_b64,
    fooocus_text_to_image,
    key_id,
    raw_http,
    wrong_secret,
)

T2I = "/v1/generation/text-to-image"


def control(stack, upstream, path, *, key, body=None, data=None):
    """The allowed twin of a refused request: proves the refusal comes from the rule under test,
    not from an unknown route or a broken key. Leaves the upstream empty again."""
    if data is None:
        data = json.dumps(body).encode()
    r = stack.request("POST", path, key=key, data=data)
    assert r.status_code == 200, f"control request (should be allowed) got {r.status_code}: {r.text[:300]}"
    assert len(upstream.requests) == 1
    upstream.clear()


# --- authentication: 401


def test_no_key(stack, upstream):
    r = stack.post(T2I, fooocus_text_to_image(), headers={"x-request-id": "e2e-no-key-1"})
    body = assert_refused(r, 401, upstream, request_id="e2e-no-key-1")
    assert body["error"]


def test_wrong_secret(stack, principals, upstream):
    assert_refused(stack.post(T2I, fooocus_text_to_image(), key=wrong_secret(principals.alice_key)), 401, upstream)


def test_wrong_secret_as_bearer(stack, principals, upstream):
    assert_refused(stack.post(T2I, fooocus_text_to_image(), bearer=wrong_secret(principals.alice_key)), 401, upstream)


@pytest.mark.parametrize(
    "bad",
    ["fk_", "fk_nothex_short", "not-a-key", "FK_0123456789abcdef_" + "a" * 43, "fk_0123456789abcdef_" + "-" * 43],
)
def test_malformed_key(stack, upstream, bad):
    assert_refused(stack.post(T2I, fooocus_text_to_image(), key=bad), 401, upstream)


def test_revoked_key_refused_within_two_seconds(stack, principals, upstream):
    key = stack.create_key(user=principals.alice)
    kid = key_id(key)
    r = stack.post(T2I, fooocus_text_to_image(), key=key)
    assert r.status_code == 200, f"a fresh key must work before it is revoked: {r.status_code} {r.text}"
    assert any(kid in json.dumps(k) for k in stack.list_keys()), "keys list --format json does not show the key"

    stack.revoke_key(kid)
    revoked_at = time.monotonic()
    refused_after = None
    while time.monotonic() - revoked_at < 3.0:
        sent_at = time.monotonic()
        r = stack.post(T2I, fooocus_text_to_image(), key=key)
        if r.status_code == 401:
            refused_after = sent_at - revoked_at
            break
        assert r.status_code == 200, r.text
        time.sleep(0.1)
    assert refused_after is not None, "the revoked key was still accepted 3 s after `keys revoke`"
    assert refused_after <= 2.0, f"revocation took {refused_after:.2f} s to take effect (contract: 2 s)"
    upstream.clear()
    assert_refused(stack.post(T2I, fooocus_text_to_image(), key=key), 401, upstream)
    (listed,) = [k for k in stack.list_keys() if k.get("id") == kid]
    assert listed.get("status") == "revoked", listed


def test_expires_days_zero_is_refused_by_the_cli(stack, principals):
    proc = stack.create_key(user=principals.alice, expires_days=0, check=False)
    assert proc.returncode != 0, f"`keys create --expires-days 0` made a key: {proc.stdout!r}"
    assert proc.stdout.strip() == "", "a refused `keys create` must print no key"
    assert proc.stderr.strip(), "a refused command must say why on stderr"


def test_expired_key(stack, principals, upstream):
    """The CLI cannot make an already-expired key (it refuses --expires-days 0), so this test ages
    a fresh, never-used key in the SQLite store itself (schema: migrations/0001_initial.sql) and
    records the change in the change feed, as the CLI would."""
    key = stack.create_key(user=principals.alice)
    kid = key_id(key)
    with contextlib.closing(sqlite3.connect(stack.dir / "inferguard.db", timeout=10)) as db, db:
        now = int(time.time())
        n = db.execute("UPDATE api_keys SET expires_at = ? WHERE id = ?", (now - 60, kid)).rowcount
        assert n == 1, "the store schema changed: update this test (api_keys.id / expires_at)"
        db.execute("INSERT INTO changes (entity, id, at) VALUES ('key', ?, ?)", (kid, now))
    (listed,) = [k for k in stack.list_keys() if k.get("id") == kid]
    assert listed.get("status") == "expired", listed
    assert_refused(stack.post(T2I, fooocus_text_to_image(), key=key), 401, upstream)


# --- authorization: 403


def test_scope_narrows_the_key(stack, principals, upstream):
    control(stack, upstream, T2I, key=principals.alice_key, body=fooocus_text_to_image())
    key = stack.create_key(user=principals.alice, scopes=["generation:view"])
    assert_refused(stack.post(T2I, fooocus_text_to_image(), key=key), 403, upstream)


def test_preset_not_allowed(stack, principals, upstream):
    control(stack, upstream, T2I, key=principals.alice_key, body=fooocus_text_to_image(performance_selection="Lightning"))
    r = stack.post(T2I, fooocus_text_to_image(performance_selection="Quality"), key=principals.alice_key)
    body = assert_refused(r, 403, upstream)
    assert "Quality" in body["reason"], body


def test_lora_in_loras_list(stack, principals, upstream):
    control(stack, upstream, T2I, key=principals.alice_key, body=fooocus_text_to_image(loras=[]))
    # A disabled entry and a "None" entry choose no LoRA: still allowed.
    unused = [{"enabled": False, "model_name": "evil.safetensors", "weight": 0.5}, {"enabled": True, "model_name": "None", "weight": 1}]
    control(stack, upstream, T2I, key=principals.alice_key, body=fooocus_text_to_image(loras=unused))
    body = fooocus_text_to_image(loras=[{"enabled": True, "model_name": "evil.safetensors", "weight": 0.5}])
    assert_refused(stack.post(T2I, body, key=principals.alice_key), 403, upstream)


def test_lora_in_prompt_tag(stack, principals, upstream):
    control(stack, upstream, T2I, key=principals.alice_key, body=fooocus_text_to_image(prompt="a cat, lora-free"))
    body = fooocus_text_to_image(prompt="a cat <lora:evil:0.8>")
    assert_refused(stack.post(T2I, body, key=principals.alice_key), 403, upstream)


def test_upscale_needs_generation_upscale(stack, principals, upstream):
    body = {"input_image": fake_image_b64(2048), "uov_method": "Upscale (2x)", "performance_selection": "Speed"}
    control(stack, upstream, "/v2/generation/image-upscale-vary", key=principals.batch_key, body=body)
    assert_refused(stack.post("/v2/generation/image-upscale-vary", body, key=principals.alice_key), 403, upstream)


def test_too_many_images(stack, principals, upstream):
    control(stack, upstream, T2I, key=principals.alice_key, body=fooocus_text_to_image(image_number=4))
    body = fooocus_text_to_image(image_number=8)
    assert_refused(stack.post(T2I, body, key=principals.alice_key), 403, upstream)


def test_unknown_route(stack, principals, upstream):
    assert_refused(stack.post("/v1/nope", fooocus_text_to_image(), key=principals.alice_key), 403, upstream)


def test_duplicate_keys_judged_as_the_upstream_reads_them(stack, principals, upstream):
    """Python's json (Fooocus-API) keeps the last duplicate: Speed-then-Quality runs Quality.
    Rejecting duplicate keys outright (400) is the other safe answer (reference §7)."""
    control(stack, upstream, T2I, key=principals.alice_key, data=b'{"prompt":"a cat","performance_selection":"Speed"}')
    data = b'{"prompt":"a cat","performance_selection":"Speed","performance_selection":"Quality"}'
    r = stack.request("POST", T2I, key=principals.alice_key, data=data)
    assert r.status_code in (400, 403), f"duplicate keys hid a Quality request: {r.status_code} {r.text}"
    assert_refused(r, r.status_code, upstream)


# --- malformed and oversized bodies


def test_malformed_json(stack, principals, upstream):
    control(stack, upstream, T2I, key=principals.alice_key, data=b'{"prompt": "a cat"}')
    r = stack.request("POST", T2I, key=principals.alice_key, data=b'{"prompt": "a cat",')
    assert_refused(r, 400, upstream)


def test_body_larger_than_envoy_buffers(stack, principals, upstream):
    """17 MiB is more than ext_authz's max_request_bytes (16 MiB): inferguard sees a truncated
    body (or Envoy refuses it first) and the answer is 413, never a guess."""
    control(stack, upstream, T2I, key=principals.alice_key, body=fooocus_text_to_image())
    body = b'{"prompt":"' + b"a" * (17 * 1024 * 1024) + b'","performance_selection":"Speed"}'
    r = raw_http(
        stack.envoy_port, "POST", T2I,
        {"Content-Type": "application/json", "X-API-KEY": principals.alice_key}, body,
    )
    assert r.status == 413, f"expected 413, got {r.status}: {r.body[:300]!r}"
    assert upstream.requests == [], "an oversized request reached the upstream"


def test_duplicate_keys_in_the_safe_order(stack, principals, upstream):
    """Quality-then-Speed runs Speed upstream: allowed (and forwarded unchanged), or refused as
    a duplicate (400); never judged on the first value alone in the other direction."""
    data = b'{"prompt":"a cat","performance_selection":"Quality","performance_selection":"Speed"}'
    r = stack.request("POST", T2I, key=principals.alice_key, data=data)
    if r.status_code == 200:
        assert upstream.only().body == data
    else:
        assert_refused(r, 400, upstream)


@pytest.mark.parametrize(
    "path",
    [
        "/v1//generation/text-to-image",
        "/v1/generation/./text-to-image",
        "/v1/x/../generation/text-to-image",
        "/v1/generation%2Ftext-to-image",
        "/v1/generation/text-to-image?accept=application/json",
    ],
)
def test_path_variants_are_judged_as_the_upstream_route(stack, principals, upstream, path):
    """Envoy normalises the path before ext_authz sees it; a Quality request for designer_basic
    is refused whatever spelling of the route it uses (and a Speed one allowed)."""
    control(stack, upstream, path, key=principals.alice_key, body=fooocus_text_to_image())
    body = fooocus_text_to_image(performance_selection="Quality")
    assert_refused(stack.post(path, body, key=principals.alice_key), 403, upstream)
