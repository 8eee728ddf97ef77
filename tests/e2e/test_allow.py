"""Requests inferguard allows: what reaches the inference server, and what it is told."""

import json

from conftest import UPSTREAM_API_KEY, fake_image_b64, fooocus_text_to_image, key_id

T2I = "/v1/generation/text-to-image"


def assert_identity(seen, subject, role, auth, kid):
    h = seen.headers
    assert h.get("x-inferguard-subject") == subject, h
    assert h.get("x-inferguard-role") == role, h
    assert h.get("x-inferguard-auth") == auth, h
    assert h.get("x-inferguard-key-id") == kid, h
    assert h.get("x-request-id"), f"upstream got no x-request-id: {h}"
    # The upstream's own key replaces whatever credential the caller sent.
    assert h.get("x-api-key") == UPSTREAM_API_KEY, h


def test_alice_key_in_x_api_key_is_allowed(stack, principals, upstream):
    body = fooocus_text_to_image()
    r = stack.post(T2I, body, key=principals.alice_key)
    assert r.status_code == 200, r.text
    seen = upstream.only()
    assert (seen.method, seen.path) == ("POST", T2I)
    assert_identity(seen, "alice", "designer_basic", "api_key", principals.alice_key_id)
    assert seen.json() == body, "the body must reach the upstream unchanged"
    assert principals.alice_key not in json.dumps(seen.headers), "the caller's key leaked upstream"


def test_alice_key_as_bearer_is_allowed_and_removed(stack, principals, upstream):
    r = stack.post(T2I, fooocus_text_to_image(), bearer=principals.alice_key)
    assert r.status_code == 200, r.text
    seen = upstream.only()
    assert_identity(seen, "alice", "designer_basic", "api_key", principals.alice_key_id)
    assert principals.alice_key not in seen.headers.get("authorization", ""), "caller's bearer key reached upstream"
    assert principals.alice_key not in json.dumps(seen.headers), "the caller's key leaked upstream"


def test_client_identity_headers_are_replaced(stack, principals, upstream):
    spoof = {
        "X-Inferguard-Subject": "mallory",
        "X-Inferguard-Role": "admin",
        "X-Inferguard-Email": "mallory@evil.example",
        "X-Inferguard-Groups": "fooocus_admins",
        "X-Inferguard-Auth": "session",
        "X-Inferguard-Key-Id": "0000000000000000",
        "X-Inferguard-Extra": "spoofed",
    }
    r = stack.post(T2I, fooocus_text_to_image(), key=principals.alice_key, headers=spoof)
    assert r.status_code == 200, r.text
    seen = upstream.only()
    assert_identity(seen, "alice", "designer_basic", "api_key", principals.alice_key_id)
    for name, value in seen.header_list:
        if name.startswith("x-inferguard-"):
            assert value not in spoof.values(), f"client-sent {name}: {value} reached the upstream"
    assert "x-inferguard-extra" not in seen.headers, "unknown client x-inferguard-* header was not removed"
    # Each identity header appears once: set, not appended next to the client's value.
    names = [n for n, _ in seen.header_list]
    for h in ("x-inferguard-subject", "x-inferguard-role"):
        assert names.count(h) == 1, seen.header_list


def test_service_account_key_for_advanced_role(stack, principals, upstream):
    r = stack.post(T2I, fooocus_text_to_image(performance_selection="Quality"), key=principals.batch_key)
    assert r.status_code == 200, r.text
    assert_identity(upstream.only(), "batch", "designer_advanced", "api_key", key_id(principals.batch_key))


def test_upscale_for_designer_advanced(stack, principals, upstream):
    body = {"input_image": fake_image_b64(2048), "uov_method": "Upscale (2x)", "performance_selection": "Speed"}
    r = stack.post("/v2/generation/image-upscale-vary", body, key=principals.batch_key)
    assert r.status_code == 200, r.text
    assert upstream.only().json() == body


def test_five_megabyte_v2_request_with_base64_image(stack, principals, upstream):
    """A Fooocus v2 request with a 5 MB base64 image prompt passes whole: Envoy buffers it and
    inferguard accepts a Check message of that size (above gRPC's 4 MiB default)."""
    body = {
        "prompt": "a cat in the style of the image",
        "performance_selection": "Quality",
        "image_prompts": [{"cn_img": fake_image_b64(3_800_000), "cn_stop": 0.5, "cn_weight": 0.6, "cn_type": "ImagePrompt"}],
    }
    data = json.dumps(body).encode()
    assert len(data) > 5_000_000
    r = stack.request("POST", "/v2/generation/text-to-image-with-ip", key=principals.batch_key, data=data)
    assert r.status_code == 200, r.text[:500]
    seen = upstream.only()
    assert seen.body == data, "the upstream must receive the whole body unchanged"
    assert seen.headers.get("x-inferguard-subject") == "batch"


def test_auth_routes_bypass_ext_authz(stack, upstream):
    """/auth/* goes to inferguard's HTTP listener, not through ext_authz to the inference pod."""
    r = stack.get("/auth/jwks.json")
    assert upstream.requests == [], "an /auth/ request reached the inference upstream"
    assert r.status_code not in (401, 403), f"/auth/ was judged by ext_authz: {r.status_code} {r.text[:200]}"


def test_envoy_access_log_records_the_decision(stack, principals, upstream):
    """The shipped envoy.yaml logs ext_authz's dynamic metadata: who was let through, or why not."""
    from conftest import wait_until

    ok = stack.post(T2I, fooocus_text_to_image(), key=principals.alice_key, headers={"x-request-id": "log-allow-1"})
    assert ok.status_code == 200, ok.text
    no = stack.post(T2I, fooocus_text_to_image(), headers={"x-request-id": "log-deny-1"})
    assert no.status_code == 401, no.text

    def line(rid):
        return next((l for l in stack.envoy_log.read_text().splitlines() if f"id={rid}" in l), None)

    wait_until(lambda: line("log-allow-1") and line("log-deny-1"), 10, "access-log lines for both requests")
    allow, deny = line("log-allow-1"), line("log-deny-1")
    assert '"decision":"allow"' in allow and '"subject":"alice"' in allow and '"role":"designer_basic"' in allow, allow
    assert '"decision":"deny"' in deny and '"status":"401"' in deny and '"error":"missing_credential"' in deny, deny
    assert principals.alice_key not in allow, "the caller's key must never reach the access log"
