"""Bearer tokens from a real OpenID Provider (npm `oidc-provider`, tests/oidc/provider.mjs),
through the real Envoy: identity headers, IdP groups mapped to roles, store bindings and
disabled users winning over a still-valid token, every accepted algorithm, and the OP rotating
its signing key while inferguard runs (no restart).

inferguard finds the OP's keys by OIDC discovery. It refetches them when a token names an
unknown `kid`, at most once per issuer every 10 s (src/identity/jwt: DEFAULT_REFETCH_INTERVAL);
the rotation tests therefore rotate only once that window has passed since inferguard last
fetched the keys, as the OP's own fetch log shows, and then expect the very first new-kid token
to be accepted.
"""

from __future__ import annotations

import time

import pytest

from conftest import UPSTREAM_API_KEY, assert_refused, fooocus_text_to_image, running_stack, wait_until
from oidc_support import (
    ALGORITHMS,
    OIDC_POLICY_YAML,
    SERVICE_CLIENT_ID,
    OpenIDProvider,
    claims_of,
    header_of,
    jwt_identity,
)

T2I = "/v1/generation/text-to-image"
QUERY_JOB = "/v1/generation/query-job"  # generation:view
REFETCH_INTERVAL = 10.0  # inferguard's least time between two on-demand JWKS fetches


@pytest.fixture(scope="module")
def op(tmp_path_factory):
    provider = OpenIDProvider(tmp_path_factory.mktemp("op")).start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, op):
    with running_stack(tmp_path_factory.mktemp("stack"), identity=jwt_identity(op), policy_yaml=OIDC_POLICY_YAML) as s:
        s.extra_logs.append(("OpenID Provider log", op.log))
        yield s


def assert_jwt_identity(seen, *, subject, role, email=None, groups=None):
    h = seen.headers
    assert h.get("x-inferguard-subject") == subject, h
    assert h.get("x-inferguard-role") == role, h
    assert h.get("x-inferguard-auth") == "jwt", h
    if email is not None:
        assert h.get("x-inferguard-email") == email, h
    if groups is not None:
        assert h.get("x-inferguard-groups") == groups, h
    assert "x-inferguard-key-id" not in h, f"a token principal has no key id: {h}"
    assert h.get("x-request-id"), h
    # The caller's bearer token never reaches the inference server; its own key does.
    assert "authorization" not in h, f"the caller's Authorization header reached the upstream: {h}"
    assert h.get("x-api-key") == UPSTREAM_API_KEY, h


def allowed(stack, upstream, token, path=T2I, body=None):
    upstream.clear()
    if path == T2I:
        r = stack.post(T2I, body or fooocus_text_to_image(), bearer=token)
    else:
        r = stack.get(path, bearer=token)
    assert r.status_code == 200, f"expected 200, got {r.status_code}: {r.text[:400]}"
    return upstream.only()


# --------------------------------------------------------------------------------------------
# Identity from a real token


def test_user_token_is_allowed_with_identity_headers(stack, op, upstream):
    token = op.token("alice")
    claims = claims_of(token)
    assert (claims["sub"], claims["iss"], claims["aud"]) == ("alice", op.issuer, "inferguard"), claims
    assert header_of(token)["alg"] == "RS256"

    r = stack.post(T2I, fooocus_text_to_image(), bearer=token,
                   headers={"X-Inferguard-Role": "admin", "X-Inferguard-Subject": "mallory"})
    assert r.status_code == 200, r.text
    seen = upstream.only()
    assert_jwt_identity(seen, subject="alice", role="designer_basic", email="alice@example.com",
                        groups="fooocus_designers_basic")
    assert token not in repr(seen.header_list), "the bearer token leaked upstream"


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_every_accepted_algorithm_from_the_op(stack, op, upstream, alg):
    """The OP signs with RS256 and PS256 (its RSA key), ES256 (P-256) and EdDSA (Ed25519)."""
    token = op.token("alice", alg=alg)
    assert header_of(token)["alg"] == alg
    seen = allowed(stack, upstream, token)
    assert_jwt_identity(seen, subject="alice", role="designer_basic", email="alice@example.com")


def test_client_credentials_token(stack, op, upstream):
    """The standard client_credentials grant: the subject is the client id, its groups map."""
    token = op.client_credentials_token(alg="ES256")
    assert claims_of(token)["sub"] == SERVICE_CLIENT_ID
    seen = allowed(stack, upstream, token, body=fooocus_text_to_image(performance_selection="Quality"))
    assert_jwt_identity(seen, subject=SERVICE_CLIENT_ID, role="designer_advanced",
                        groups="fooocus_designers_advanced")


def test_same_token_twice_is_allowed(stack, op, upstream):
    token = op.token("alice", alg="ES256")
    for _ in range(2):
        assert_jwt_identity(allowed(stack, upstream, token), subject="alice", role="designer_basic")


# --------------------------------------------------------------------------------------------
# Groups -> roles


@pytest.mark.parametrize(
    "username, groups, role",
    [
        ("g-basic", ["fooocus_designers_basic"], "designer_basic"),
        ("g-adv", ["fooocus_designers_advanced"], "designer_advanced"),
        ("g-basic-adv", ["fooocus_designers_basic", "fooocus_designers_advanced"], "designer_advanced"),
        ("g-adv-basic", ["fooocus_designers_advanced", "fooocus_designers_basic"], "designer_advanced"),
        ("g-all", ["fooocus_designers_basic", "fooocus_admins", "fooocus_designers_advanced"], "admin"),
        ("g-other-basic", ["marketing", "fooocus_designers_basic"], "designer_basic"),
    ],
)
def test_groups_map_to_the_most_privileged_role(stack, op, upstream, username, groups, role):
    op.set_user(username, groups=groups)
    token = op.token(username)
    assert claims_of(token)["groups"] == groups
    seen = allowed(stack, upstream, token)
    assert_jwt_identity(seen, subject=username, role=role, groups=",".join(groups))


def test_group_role_decides_presets(stack, op, upstream):
    """The mapped role is really applied: Quality is refused to designer_basic, allowed to
    designer_advanced."""
    op.set_user("pat-basic", groups=["fooocus_designers_basic"])
    op.set_user("pat-adv", groups=["fooocus_designers_advanced"])
    quality = fooocus_text_to_image(performance_selection="Quality")
    upstream.clear()
    body = assert_refused(stack.post(T2I, quality, bearer=op.token("pat-basic")), 403, upstream)
    assert body["error"] == "preset_not_allowed", body
    seen = allowed(stack, upstream, op.token("pat-adv"), body=quality)
    assert_jwt_identity(seen, subject="pat-adv", role="designer_advanced")


@pytest.mark.parametrize("username, groups", [("nogroup", []), ("unmapped", ["sales", "fooocus_designers"])])
def test_no_mapped_group_gets_the_default_role(stack, op, upstream, username, groups):
    op.set_user(username, groups=groups)
    token = op.token(username)
    upstream.clear()
    body = assert_refused(stack.post(T2I, fooocus_text_to_image(), bearer=token), 403, upstream)
    assert body["error"] == "permission_denied", body
    # viewer may still view.
    seen = allowed(stack, upstream, token, path=QUERY_JOB)
    assert_jwt_identity(seen, subject=username, role="viewer")


# --------------------------------------------------------------------------------------------
# The store wins over the token


def test_set_role_binding_wins_over_groups_within_2s(stack, op, upstream):
    op.set_user("dora", groups=["fooocus_designers_basic"])
    token = op.token("dora")
    quality = fooocus_text_to_image(performance_selection="Quality")
    upstream.clear()
    assert_refused(stack.post(T2I, quality, bearer=token), 403, upstream)

    stack.cli("users", "set-role", args=["--username", "dora", "--role", "admin"])
    changed = time.monotonic()

    def admin_now():
        upstream.clear()
        return stack.post(T2I, quality, bearer=token).status_code == 200

    wait_until(admin_now, 2.0, "the admin binding to apply to dora's unchanged token", 0.1)
    assert time.monotonic() - changed <= 2.0
    assert_jwt_identity(upstream.only(), subject="dora", role="admin", groups="fooocus_designers_basic")

    # A binding to a lesser role also beats a more privileged group.
    op.set_user("dora", groups=["fooocus_admins"])
    token = op.token("dora")
    seen = allowed(stack, upstream, token)
    assert_jwt_identity(seen, subject="dora", role="admin")
    stack.cli("users", "set-role", args=["--username", "dora", "--role", "viewer"])

    def viewer_now():
        upstream.clear()
        r = stack.post(T2I, fooocus_text_to_image(), bearer=token)
        return r.status_code == 403 and r.json()["error"] == "permission_denied"

    wait_until(viewer_now, 2.0, "the viewer binding to beat dora's fooocus_admins group", 0.1)


def test_disabled_user_token_is_refused_within_2s(stack, op, upstream):
    stack.create_user("designer_basic", "erin")
    op.set_user("erin", groups=["fooocus_designers_basic"])
    token = op.token("erin")
    assert_jwt_identity(allowed(stack, upstream, token), subject="erin", role="designer_basic")

    stack.cli("users", "disable", args=["--username", "erin"])
    changed = time.monotonic()

    def refused():
        upstream.clear()
        return stack.post(T2I, fooocus_text_to_image(), bearer=token).status_code == 401

    wait_until(refused, 2.0, "erin's still-valid token to be refused after users disable", 0.1)
    assert time.monotonic() - changed <= 2.0
    upstream.clear()
    r = stack.post(T2I, fooocus_text_to_image(), bearer=token)
    body = assert_refused(r, 401, upstream)
    assert body["error"] == "disabled_principal", body
    assert "Bearer" in r.headers["WWW-Authenticate"], r.headers
    # A fresh token from the IdP does not help.
    assert_refused(stack.post(T2I, fooocus_text_to_image(), bearer=op.token("erin")), 401, upstream)


# --------------------------------------------------------------------------------------------
# Key rotation at the OP, inferguard running throughout


def wait_out_refetch_window(op):
    """Sleeps until inferguard's last fetch of the OP's keys is REFETCH_INTERVAL (+ margin) old."""
    fetches = op.jwks_fetches()
    assert fetches, "inferguard never fetched the OP's keys"
    left = fetches[-1] + REFETCH_INTERVAL + 0.5 - time.time()
    if left > 0:
        time.sleep(left)


def test_rotation_keeping_the_old_key(stack, op, upstream):
    pid = stack.serve.pid
    old_token = op.token("alice")
    assert_jwt_identity(allowed(stack, upstream, old_token), subject="alice", role="designer_basic")
    wait_out_refetch_window(op)
    fetches_before = len(op.jwks_fetches())

    rotated = op.rotate(keep_old=True)
    assert rotated["previous_kid"] in rotated["published"] and rotated["kid"] in rotated["published"]
    new_token = op.token("alice")
    assert header_of(new_token)["kid"] == rotated["kid"]

    # The first request with the new kid is accepted: inferguard refetched the JWKS for it.
    assert_jwt_identity(allowed(stack, upstream, new_token), subject="alice", role="designer_basic")
    assert len(op.jwks_fetches()) > fetches_before, "inferguard accepted an unknown kid without fetching keys"
    # The old key is still published: its tokens still work, and other algorithms too.
    assert_jwt_identity(allowed(stack, upstream, old_token), subject="alice", role="designer_basic")
    assert_jwt_identity(allowed(stack, upstream, op.token("alice", alg="EdDSA")), subject="alice",
                        role="designer_basic")
    assert stack.serve.poll() is None and stack.serve.pid == pid, "inferguard restarted"


def test_rotation_removing_the_old_key(stack, op, upstream):
    pid = stack.serve.pid
    old_token = op.token("alice")  # signed with the key about to be removed
    assert_jwt_identity(allowed(stack, upstream, old_token), subject="alice", role="designer_basic")
    wait_out_refetch_window(op)

    rotated = op.rotate(keep_old=False)
    assert rotated["previous_kid"] not in rotated["published"], rotated
    new_token = op.token("alice", alg="PS256")
    assert header_of(new_token)["kid"] == rotated["kid"]

    assert_jwt_identity(allowed(stack, upstream, new_token), subject="alice", role="designer_basic")
    # inferguard now holds the new JWKS, without the old key: the old token (verified and
    # cached before) is refused from now on, with the usual 401.
    upstream.clear()
    r = stack.post(T2I, fooocus_text_to_image(), bearer=old_token)
    body = assert_refused(r, 401, upstream)
    assert body["error"] == "invalid_token", body
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"], r.headers

    # The service is otherwise untouched: new tokens of every algorithm, keys, health.
    for alg in ALGORITHMS:
        assert_jwt_identity(allowed(stack, upstream, op.token("bob", alg=alg)), subject="bob",
                            role="designer_advanced")
    key = stack.create_key(user=stack.create_user("designer_basic"))
    upstream.clear()
    assert stack.post(T2I, fooocus_text_to_image(), key=key).status_code == 200
    assert stack.health_serving()
    assert stack.serve.poll() is None and stack.serve.pid == pid, "inferguard restarted"
