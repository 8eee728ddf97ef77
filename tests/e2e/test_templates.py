"""Prompt templates managed at run time (`inferguard templates …`) through the real Envoy:
an `intern` (templates_only) is refused until an art director's template is approved by
another art director, the approval applies within 2 s, and a retirement stops it again."""

import json
import time

import pytest

from conftest import POLICY_YAML, assert_refused, fooocus_text_to_image, running_stack

T2I = "/v1/generation/text-to-image"

TEMPLATES_POLICY = POLICY_YAML + """\
  intern:
    permissions: [generation:create]
    templates_only: true
  art_director:
    permissions: [generation:create, templates:manage]
templates:
  - {name: static-banner, text: "a banner saying {words}"}
"""

PROMPT = "a photo of red sneakers on a white background"


@pytest.fixture(scope="module")
def tstack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("templates"), policy_yaml=TEMPLATES_POLICY) as s:
        yield s


def t2i(s, key, prompt):
    return s.post(T2I, fooocus_text_to_image(prompt=prompt), key=key)


def first_status_within(s, key, prompt, status, seconds):
    """Polls until the request gets `status`; returns the elapsed seconds (fails after `seconds`)."""
    start = time.monotonic()
    while True:
        r = t2i(s, key, prompt)
        elapsed = time.monotonic() - start
        if r.status_code == status:
            return elapsed
        assert elapsed < seconds, f"still {r.status_code} after {elapsed:.2f}s: {r.text[:300]}"
        time.sleep(0.05)


def templates(s, *words, by=None, check=True):
    return s.cli("templates", *words, args=["--as", by] if by else [], check=check)


def test_approved_template_applies_within_2s_and_retire_stops_it(tstack):
    s = tstack
    intern = s.create_user("intern")
    key = s.create_key(user=intern)
    ann = s.create_user("art_director")
    bob = s.create_user("art_director")

    # The static template applies, anything else is refused.
    assert t2i(s, key, "a banner saying summer sale").status_code == 200
    body = assert_refused(t2i(s, key, PROMPT), 403)
    assert body["error"] == "template_required"

    s.cli("templates", "add", args=["--name", "product-shot", "--text",
                                    "a photo of {subject} on a white background", "--as", ann])
    # Proposed is not approved; the proposer cannot approve their own template.
    assert_refused(t2i(s, key, PROMPT), 403)
    own = templates(s, "approve", "product-shot", by=ann, check=False)
    assert own.returncode != 0 and "themselves" in own.stderr, own.stderr

    templates(s, "approve", "product-shot", by=bob)
    elapsed = first_status_within(s, key, PROMPT, 200, 2.0)
    assert elapsed < 2.0
    # Placeholders still take plain words only.
    body = assert_refused(t2i(s, key, "a photo of <lora:x:1> on a white background"), 403)
    assert body["error"] == "template_required"

    listed = json.loads(s.cli("templates", "list", args=["--format", "json", "--status", "approved"]).stdout)
    assert [t["name"] for t in listed] == ["product-shot"]
    assert listed[0]["proposed_by"] == ann and listed[0]["approved_by"] == bob

    templates(s, "retire", "product-shot", by=ann)
    first_status_within(s, key, PROMPT, 403, 2.0)
    body = assert_refused(t2i(s, key, PROMPT), 403)
    assert body["error"] == "template_required"


def test_only_template_managers_may_change_templates(tstack):
    s = tstack
    intern = s.create_user("intern")
    designer = s.create_user("designer_basic")
    for who in (intern, designer, "nobody"):
        r = s.cli("templates", "add", args=["--name", f"t-{who}", "--text", "x {y}", "--as", who], check=False)
        assert r.returncode != 0, r.stdout
    ann = s.create_user("art_director")
    broken = s.cli("templates", "add", args=["--name", "broken", "--text", "x {y", "--as", ann], check=False)
    assert broken.returncode != 0 and "closing" in broken.stderr, broken.stderr
    listed = json.loads(s.cli("templates", "list", args=["--format", "json"]).stdout)
    assert all(t["name"] != "broken" and not t["name"].startswith("t-") for t in listed), listed
