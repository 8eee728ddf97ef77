"""OpenAI-compatible routes (mistral.rs, TGI's /v1/*) behind the same sidecar."""

from conftest import UPSTREAM_API_KEY, assert_refused, key_id

CHAT = {
    "model": "mistral-7b-instruct",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write a haiku about cats."},
    ],
    "max_tokens": 64,
    "temperature": 0.7,
}


def test_chat_completion_allowed_with_identity(stack, principals, upstream):
    r = stack.post("/v1/chat/completions", CHAT, bearer=principals.batch_key)
    assert r.status_code == 200, r.text
    seen = upstream.only()
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    h = seen.headers
    assert h.get("x-inferguard-subject") == "batch", h
    assert h.get("x-inferguard-role") == "designer_advanced", h
    assert h.get("x-inferguard-auth") == "api_key", h
    assert h.get("x-inferguard-key-id") == key_id(principals.batch_key), h
    assert h.get("x-request-id"), h
    assert h.get("x-api-key") == UPSTREAM_API_KEY, h
    assert principals.batch_key not in h.get("authorization", ""), "caller's bearer key reached upstream"
    assert seen.json() == CHAT


def test_models_list_needs_models_view(stack, principals, upstream):
    r = stack.get("/v1/models", key=principals.batch_key)
    assert r.status_code == 200, f"control: designer_advanced has models:view: {r.status_code} {r.text}"
    upstream.clear()
    assert_refused(stack.get("/v1/models", key=principals.viewer_key), 403, upstream)


def test_chat_completion_refused_for_viewer(stack, principals, upstream):
    r = stack.post("/v1/chat/completions", CHAT, key=principals.batch_key)
    assert r.status_code == 200, f"control: designer_advanced may chat: {r.status_code} {r.text}"
    upstream.clear()
    assert_refused(stack.post("/v1/chat/completions", CHAT, key=principals.viewer_key), 403, upstream)
