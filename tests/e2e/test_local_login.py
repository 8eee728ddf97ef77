"""inferguard's own login for local users (`identity.local_users`), through the real Envoy's
`/auth/` route to inferguard's http listener: the OAuth2 password and refresh-token grants at
`POST /auth/token`, the EdDSA access token it issues working on the inference routes, the
public key at `GET /auth/jwks.json`, identical answers for a wrong password and an unknown
user, and the per-username failure limit (429 + Retry-After)."""

from __future__ import annotations

import json
import time

import pytest
import requests

from conftest import UPSTREAM_API_KEY, assert_refused, fooocus_text_to_image, running_stack, wait_until
from oidc_support import claims_of, header_of

T2I = "/v1/generation/text-to-image"
PASSWORD = "long-password-123"
USERNAME_FAILURE_LIMIT = 10


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    identity = {"api_keys": {"headers": ["x-api-key"]}, "local_users": {"enabled": True}}
    with running_stack(tmp_path_factory.mktemp("stack"), identity=identity) as s:
        for username in ("carol", "dave", "rita", "lena", "olga"):
            s.cli("users", "create", args=["--username", username, "--role", "designer_basic", "--password-stdin"],
                  stdin=f"{PASSWORD}\n")
        s.cli("users", "disable", args=["--username", "olga"])
        yield s


def token_request(stack, **form) -> requests.Response:
    return requests.post(f"{stack.url}/auth/token", data=form, timeout=30)


def login(stack, username="carol", password=PASSWORD) -> requests.Response:
    return token_request(stack, grant_type="password", username=username, password=password)


def good_login(stack, username="carol") -> dict:
    r = login(stack, username)
    assert r.status_code == 200, f"POST /auth/token (password grant, {username}): {r.status_code} {r.text[:300]}"
    return r.json()


def test_jwks_publishes_an_ed25519_key(stack):
    r = requests.get(f"{stack.url}/auth/jwks.json", timeout=10)
    assert r.status_code == 200, f"GET /auth/jwks.json: {r.status_code} {r.text[:300]}"
    keys = r.json()["keys"]
    assert keys, r.text
    for k in keys:
        assert (k["kty"], k["crv"]) == ("OKP", "Ed25519"), k
        assert k.get("kid"), k
        assert "d" not in k, "the private key is published"
        assert k.get("alg", "EdDSA") == "EdDSA", k


def test_password_login_issues_an_eddsa_token_and_a_refresh_token(stack):
    r = login(stack)
    assert r.status_code == 200, f"POST /auth/token: {r.status_code} {r.text[:300]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    assert "no-store" in r.headers.get("Cache-Control", ""), f"RFC 6749 §5.1 wants Cache-Control: no-store: {r.headers}"
    body = r.json()
    assert body["token_type"].lower() == "bearer", body
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0, body
    assert body.get("refresh_token"), body
    header = header_of(body["access_token"])
    assert header["alg"] == "EdDSA", header
    kids = {k["kid"] for k in requests.get(f"{stack.url}/auth/jwks.json", timeout=10).json()["keys"]}
    assert header.get("kid") in kids, (header, kids)
    claims = claims_of(body["access_token"])
    assert claims["sub"] == "carol", claims


def test_local_access_token_works_through_envoy(stack, upstream):
    token = good_login(stack)["access_token"]
    r = stack.post(T2I, fooocus_text_to_image(), bearer=token)
    assert r.status_code == 200, f"the local access token was refused: {r.status_code} {r.text[:300]}"
    h = upstream.only().headers
    assert h.get("x-inferguard-subject") == "carol", h
    assert h.get("x-inferguard-role") == "designer_basic", h
    assert h.get("x-inferguard-auth") == "jwt", h
    assert "authorization" not in h, h
    assert h.get("x-api-key") == UPSTREAM_API_KEY, h


def test_wrong_password_unknown_user_and_disabled_user_are_answered_alike(stack):
    """README: byte-identical 400 invalid_grant answers (RFC 6749 §5.2)."""
    wrong = login(stack, "carol", "not-the-password-1")
    unknown = login(stack, "nobody-here", "not-the-password-1")
    disabled = login(stack, "olga", PASSWORD)  # the right password of a disabled user
    assert wrong.status_code == 400, f"{wrong.status_code} {wrong.text}"
    assert wrong.json()["error"] == "invalid_grant", wrong.text
    for name, other in (("unknown user", unknown), ("disabled user", disabled)):
        assert (other.status_code, other.content) == (wrong.status_code, wrong.content), (
            f"wrong password: {wrong.status_code} {wrong.text!r}; {name}: {other.status_code} {other.text!r}"
        )
    assert "access_token" not in wrong.text + unknown.text + disabled.text
    # carol's own login still works (one failure, then forgiven).
    good_login(stack)


def test_ten_failures_lock_the_username_with_429(stack):
    for i in range(USERNAME_FAILURE_LIMIT):
        r = login(stack, "dave", f"wrong-password-{i}")
        assert r.status_code == 400, f"failure {i + 1}: {r.status_code} {r.text}"
    locked = login(stack, "dave", "wrong-password-x")
    assert locked.status_code == 429, f"after {USERNAME_FAILURE_LIMIT} failures: {locked.status_code} {locked.text}"
    retry_after = locked.headers.get("Retry-After")
    assert retry_after and retry_after.isdigit() and int(retry_after) > 0, locked.headers
    # Locked means locked: the right password gets 429 too, and no token.
    right = login(stack, "dave", PASSWORD)
    assert right.status_code == 429, f"{right.status_code} {right.text}"
    assert "access_token" not in right.text
    # Only that username: another user from the same address still logs in.
    good_login(stack, "rita")


def test_refresh_rotates_and_the_old_refresh_token_fails(stack, upstream):
    first = good_login(stack)
    r = token_request(stack, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert r.status_code == 200, f"refresh_token grant: {r.status_code} {r.text[:300]}"
    second = r.json()
    assert second.get("refresh_token") and second["refresh_token"] != first["refresh_token"], second
    assert header_of(second["access_token"])["alg"] == "EdDSA"
    upstream.clear()
    r = stack.post(T2I, fooocus_text_to_image(), bearer=second["access_token"])
    assert r.status_code == 200, f"the refreshed access token was refused: {r.status_code} {r.text[:300]}"
    assert upstream.only().headers.get("x-inferguard-subject") == "carol"

    again = token_request(stack, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert again.status_code == 400, f"the old refresh token was accepted again: {again.status_code} {again.text}"
    assert again.json()["error"] == "invalid_grant", again.text
    assert "access_token" not in again.text
    # README: presenting a rotated refresh token again revokes its whole family.
    family = token_request(stack, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert family.status_code == 400, f"the family survived a replayed refresh token: {family.status_code} {family.text}"
    assert family.json()["error"] == "invalid_grant", family.text
    # A fresh password login is a new family and works.
    good_login(stack)


def test_disabled_local_user_loses_token_and_refresh_within_2s(stack, upstream):
    tokens = good_login(stack, "lena")
    r = stack.post(T2I, fooocus_text_to_image(), bearer=tokens["access_token"])
    assert r.status_code == 200, r.text
    stack.cli("users", "disable", args=["--username", "lena"])
    changed = time.monotonic()

    def refused():
        return stack.post(T2I, fooocus_text_to_image(), bearer=tokens["access_token"]).status_code == 401

    wait_until(refused, 2.0, "lena's local access token to be refused after users disable", 0.1)
    assert time.monotonic() - changed <= 2.0
    upstream.clear()
    body = assert_refused(stack.post(T2I, fooocus_text_to_image(), bearer=tokens["access_token"]), 401, upstream)
    assert body["error"] == "disabled_principal", body
    r = token_request(stack, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", f"{r.status_code} {r.text}"
    r = login(stack, "lena")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", f"{r.status_code} {r.text}"


def test_unsupported_grant_is_refused(stack):
    r = token_request(stack, grant_type="client_credentials")
    assert r.status_code == 400, f"{r.status_code} {r.text}"
    assert json.loads(r.text)["error"] in ("unsupported_grant_type", "invalid_request"), r.text
