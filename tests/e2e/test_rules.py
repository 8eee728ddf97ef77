"""CEL rules, approvals, content filters and templates through the real Envoy."""

import pytest

from conftest import POLICY_YAML, assert_refused, fooocus_text_to_image, running_stack

T2I = "/v1/generation/text-to-image"

RULES_POLICY = POLICY_YAML.replace(
    "presets: [Speed, Lightning, Extreme Speed, Quality]",
    "presets: [Speed, Lightning, Extreme Speed, Quality]\n    templates_only: false",
) + """\
  intern:
    permissions: [generation:create]
    templates_only: true
templates:
  - {name: product-shot, text: "a photo of {subject} on a white background"}
rules:
  - {name: cost_control, when: 'user.department == "marketing" && request.preset == "Quality"', effect: require_approval}
  - name: brand_safety
    when: 'user.role == "designer_basic" && request.negative_prompt == ""'
    effect: deny
    message: designer_basic generations need a negative prompt
  - {name: data_classification, when: 'has(user.attributes.clearance_level) && user.clearance_level < 3 && request.contains_pii', effect: deny}
content:
  forbidden_terms: [gore]
  pii: {credit_card: deny, email: redact}
"""


@pytest.fixture(scope="module")
def rstack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("rules"), policy_yaml=RULES_POLICY) as s:
        yield s


def user_with(s, role, *attrs):
    name = s.unique("u")
    args = ["--username", name, "--role", role]
    for a in attrs:
        args += ["--attr", a]
    s.cli("users", "create", args=args)
    return name, s.create_key(user=name)


def t2i(s, key, headers=None, **body):
    return s.post(T2I, fooocus_text_to_image(**body), key=key, headers=headers or {})


def test_brand_safety_rule_denies_with_its_message(rstack):
    _, key = user_with(rstack, "designer_basic")
    body = assert_refused(t2i(rstack, key, negative_prompt=""), 403)
    assert body["error"] == "rule_denied"
    assert body["rule"] == "brand_safety" or "brand_safety" in str(body["rule"])
    assert "negative prompt" in body["reason"]
    assert t2i(rstack, key, negative_prompt="blurry").status_code == 200


def test_content_filters_refuse_without_echoing(rstack):
    _, key = user_with(rstack, "designer_advanced")
    r = t2i(rstack, key, prompt="ＧＯＲＥ everywhere")  # full-width evasion
    body = assert_refused(r, 400)
    assert body["error"] == "content_blocked"
    r = t2i(rstack, key, prompt="card 4111-1111 1111-1111 please")
    body = assert_refused(r, 400)
    assert "credit_card" in body["reason"]
    assert "4111" not in r.text
    # Redact-only PII passes.
    assert t2i(rstack, key, prompt="mail me at a@b.example").status_code == 200


def test_data_classification_uses_typed_attributes(rstack):
    _, low = user_with(rstack, "designer_advanced", "clearance_level=2")
    _, high = user_with(rstack, "designer_advanced", "clearance_level=3")
    prompt = "contact a@b.example"
    assert_refused(t2i(rstack, low, prompt=prompt), 403)
    assert t2i(rstack, high, prompt=prompt).status_code == 200
    assert t2i(rstack, low, prompt="no pii here").status_code == 200


def test_templates_only_role(rstack):
    _, key = user_with(rstack, "intern")
    ok = t2i(rstack, key, prompt="a photo of red sneakers on a white background")
    assert ok.status_code == 200, ok.text
    body = assert_refused(t2i(rstack, key, prompt="a photo of <lora:x:1> on a white background"), 403)
    assert body["error"] == "template_required"
    assert_refused(t2i(rstack, key, prompt="anything else"), 403)


def test_approval_flow_end_to_end(rstack):
    s = rstack
    requester, key = user_with(s, "designer_advanced", "department=marketing")
    other, other_key = user_with(s, "designer_advanced", "department=marketing")
    approver, _ = user_with(s, "admin")
    quality = dict(performance_selection="Quality", prompt="a lighthouse")

    r = t2i(s, key, **quality)
    body = assert_refused(r, 403)
    assert body["status"] == "pending_approval"
    approval_id = body["approval_id"]
    assert approval_id.startswith("ap_")
    # The identical request while pending gets the same id, and retrying early is refused.
    assert t2i(s, key, **quality).json()["approval_id"] == approval_id
    hdr = {"x-inferguard-approval": approval_id}
    assert t2i(s, key, headers=hdr, **quality).status_code == 403

    listed = s.cli("approvals", "list", args=["--format", "json", "--status", "pending"]).stdout
    assert approval_id in listed
    s.cli("approvals", "approve", approval_id, args=["--as", approver])

    # Another user, or a changed request, cannot use it.
    assert_refused(t2i(s, other_key, headers=hdr, **quality), 403)
    changed = dict(quality, prompt="a different lighthouse")
    assert_refused(t2i(s, key, headers=hdr, **changed), 403)
    # The requester's identical retry passes once; a replay is refused.
    s.upstream.clear()
    r = t2i(s, key, headers=hdr, **quality)
    assert r.status_code == 200, r.text
    assert "x-inferguard-approval" not in s.upstream.requests[-1].headers
    replay = assert_refused(t2i(s, key, headers=hdr, **quality), 403)
    assert replay["error"] == "approval_used"


def test_rejected_approval(rstack):
    s = rstack
    _, key = user_with(s, "designer_advanced", "department=marketing")
    approver, _ = user_with(s, "admin")
    quality = dict(performance_selection="Quality", prompt="rejected please")
    approval_id = t2i(s, key, **quality).json()["approval_id"]
    s.cli("approvals", "reject", approval_id, args=["--as", approver])
    body = assert_refused(t2i(s, key, headers={"x-inferguard-approval": approval_id}, **quality), 403)
    assert body["error"] == "approval_rejected"
