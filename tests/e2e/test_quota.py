"""Daily quotas through the real Envoy: consumed only by allowed requests, exact under
concurrency, with 429 + Retry-After + RateLimit-* when exhausted and the remaining count sent
to the upstream."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import POLICY_YAML, assert_refused, fooocus_text_to_image, running_stack

T2I = "/v1/generation/text-to-image"

QUOTA_POLICY = POLICY_YAML + """\
  metered:
    permissions: [generation:create, generation:view]
    presets: [Speed]
    max_images: 4
    daily_images: 6
  chat_metered:
    permissions: [generation:create]
    daily_requests: 3
    daily_tokens: 1000
"""


@pytest.fixture(scope="module")
def qstack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("quota"), policy_yaml=QUOTA_POLICY) as s:
        yield s


def post(s, key, **body):
    return s.post(T2I, fooocus_text_to_image(**body), key=key)


def test_images_are_counted_and_refusals_cost_nothing(qstack):
    s = qstack
    user = s.create_user("metered")
    key = s.create_key(user=user)
    s.upstream.clear()

    r = post(s, key, image_number=4)
    assert r.status_code == 200, r.text
    seen = s.upstream.requests[-1].headers
    assert seen["x-inferguard-quota-remaining"] == "2"
    assert seen["x-inferguard-quota-limit"] == "6"

    # Refused for a preset: costs nothing.
    assert_refused(post(s, key, performance_selection="Quality", image_number=1), 403)
    # Asking 3 of the 2 left is refused whole (all-or-nothing), with the reset in Retry-After.
    r = post(s, key, image_number=3)
    body = assert_refused(r, 429)
    assert body["error"] == "quota_exceeded"
    assert int(r.headers["retry-after"]) > 0
    assert r.headers["ratelimit-limit"] == "6"
    assert r.headers["ratelimit-remaining"] == "0"
    assert 0 < int(r.headers["ratelimit-reset"]) <= 86400
    # The 2 left are still there.
    assert post(s, key, image_number=2).status_code == 200
    assert post(s, key, image_number=1).status_code == 429


def test_parallel_requests_never_overshoot(qstack):
    s = qstack
    user = s.create_user("metered")
    key = s.create_key(user=user)
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: post(s, key, image_number=1).status_code, range(30)))
    assert statuses.count(200) == 6, statuses
    assert statuses.count(429) == 24, statuses


def test_key_limit_is_its_own_counter(qstack):
    s = qstack
    user = s.create_user("metered")
    small = s.create_key(user=user, name=s.unique("small"))
    # --daily-images on the key: 2 images a day through this key, on top of the owner's 6.
    limited = s.cli("keys", "create", args=["--name", s.unique("k"), "--user", user, "--daily-images", "2"]).stdout.strip()
    assert post(s, limited, image_number=2).status_code == 200
    r = post(s, limited, image_number=1)
    assert r.status_code == 429
    assert "keys." in json.loads(r.text)["rule"]
    # The owner's other key still has the rest of the owner's allowance (6 - 2 = 4).
    assert post(s, small, image_number=4).status_code == 200
    assert post(s, small, image_number=1).status_code == 429


def test_llm_tokens_asked_are_counted(qstack):
    s = qstack
    user = s.create_user("chat_metered")
    key = s.create_key(user=user)
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 400}
    assert s.post("/v1/chat/completions", chat, key=key).status_code == 200
    assert s.post("/v1/chat/completions", chat, key=key).status_code == 200
    # 800 of 1000 tokens used: asking 400 more is refused.
    r = s.post("/v1/chat/completions", chat, key=key)
    assert r.status_code == 429
    assert "daily_tokens" in json.loads(r.text)["rule"]
    small = dict(chat, max_tokens=100)
    assert s.post("/v1/chat/completions", small, key=key).status_code == 200
    # Three requests used (900 tokens): the fourth is refused by daily_requests.
    r = s.post("/v1/chat/completions", dict(chat, max_tokens=1), key=key)
    assert r.status_code == 429
    assert "daily_requests" in json.loads(r.text)["rule"]
