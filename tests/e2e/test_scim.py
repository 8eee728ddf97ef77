"""SCIM 2.0 provisioning through the real Envoy (`/scim/v2/*` routed to inferguard's http
listener): Okta and Entra ID request shapes, the bearer token, group membership mapped to a
role by policy.yaml's `groups:`, and deactivation that at once ends a live local-login token
and its refresh token and a live API key."""

from __future__ import annotations

import os

import pytest
import requests

from conftest import POLICY_YAML, assert_refused, fooocus_text_to_image, running_stack, wait_until

T2I = "/v1/generation/text-to-image"
TOKEN = "scim-e2e-token-" + "x" * 40
PASSWORD = "long-password-123"
SCIM_JSON = "application/scim+json"
POLICY = POLICY_YAML.replace("default_role: viewer\n", "default_role: viewer\ngroups: {designers: designer_basic}\n")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    os.environ["INFERGUARD_SCIM_TOKEN"] = TOKEN
    try:
        identity = {"api_keys": {"headers": ["x-api-key"]}, "local_users": {"enabled": True}}
        with running_stack(
            tmp_path_factory.mktemp("scim"),
            identity=identity,
            policy_yaml=POLICY,
            extra_config={"scim": {"enabled": True, "token_env": "INFERGUARD_SCIM_TOKEN"}},
        ) as s:
            yield s
    finally:
        os.environ.pop("INFERGUARD_SCIM_TOKEN", None)


def scim(stack, method: str, path: str, body=None, token: str | None = TOKEN) -> requests.Response:
    headers = {"content-type": SCIM_JSON}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return requests.request(method, f"{stack.url}/scim/v2{path}", json=body, headers=headers, timeout=30)


def okta_user(name: str) -> dict:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": name, "type": "work"}],
        "displayName": "Test User",
        "externalId": "00u" + name.split("@")[0],
        "groups": [],
        "active": True,
    }


def test_the_bearer_token_is_required(stack):
    for token in (None, "wrong-token"):
        r = scim(stack, "GET", "/Users", token=token)
        assert r.status_code == 401, r.text
        body = r.json()
        assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert body["status"] == "401"
    r = scim(stack, "GET", "/ServiceProviderConfig")
    assert r.status_code == 200 and r.headers["content-type"] == SCIM_JSON
    assert r.json()["patch"]["supported"] is True


def test_okta_create_lookup_and_group_role(stack, upstream):
    name = stack.unique("okta") + "@example.com"
    r = scim(stack, "GET", f'/Users?filter=userName eq "{name}"&startIndex=1&count=100')
    assert r.status_code == 200 and r.json()["totalResults"] == 0, r.text
    r = scim(stack, "POST", "/Users", okta_user(name))
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = scim(stack, "GET", f'/Users?filter=userName eq "{name}"')
    assert r.json()["Resources"][0]["id"] == user_id
    assert scim(stack, "POST", "/Users", okta_user(name)).json()["scimType"] == "uniqueness"

    key = stack.create_key(user=name)
    # No binding, no group: the default role (viewer) may not generate.
    r = stack.post(T2I, fooocus_text_to_image(), key=key)
    assert_refused(r, 403, upstream)

    r = scim(stack, "POST", "/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                        "displayName": "designers", "members": []})
    assert r.status_code == 201, r.text
    group_id = r.json()["id"]
    r = scim(stack, "PATCH", f"/Groups/{group_id}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id, "display": name}]}],
    })
    assert r.status_code == 200, r.text

    def generates():
        upstream.clear()
        return stack.post(T2I, fooocus_text_to_image(), key=key).status_code == 200

    wait_until(generates, 10, "the group's role to reach the running server")
    seen = upstream.only()
    assert seen.headers.get("x-inferguard-role") == "designer_basic"
    assert "designers" in seen.headers.get("x-inferguard-groups", "")

    r = scim(stack, "PATCH", f"/Groups/{group_id}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": f'members[value eq "{user_id}"]'}],
    })
    assert r.status_code == 200, r.text
    wait_until(lambda: stack.post(T2I, fooocus_text_to_image(), key=key).status_code == 403, 10,
               "the removal to reach the running server")

    # Okta's deactivation.
    r = scim(stack, "PATCH", f"/Users/{user_id}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": False}}],
    })
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    wait_until(lambda: stack.post(T2I, fooocus_text_to_image(), key=key).status_code == 401, 10,
               "the key to stop working")


def test_entra_deactivation_kills_token_refresh_and_key(stack, upstream):
    name = stack.unique("entra")
    stack.cli("users", "create", args=["--username", name, "--role", "designer_basic", "--password-stdin"],
              stdin=f"{PASSWORD}\n")
    # Entra ID provisions the existing user: it is adopted, not duplicated.
    r = scim(stack, "POST", "/Users", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": name,
        "active": "True",
        "emails": [{"primary": True, "type": "work", "value": f"{name}@example.com"}],
        "name": {"familyName": "F", "givenName": "G"},
    })
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]

    login = requests.post(f"{stack.url}/auth/token", data={
        "grant_type": "password", "username": name, "password": PASSWORD}, timeout=30)
    assert login.status_code == 200, login.text
    tokens = login.json()
    key = stack.create_key(user=name)
    assert stack.post(T2I, fooocus_text_to_image(), bearer=tokens["access_token"]).status_code == 200
    assert stack.post(T2I, fooocus_text_to_image(), key=key).status_code == 200

    r = scim(stack, "PATCH", f"/Users/{user_id}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
    })
    assert r.status_code == 200 and r.json()["active"] is False, r.text

    wait_until(lambda: stack.post(T2I, fooocus_text_to_image(), key=key).status_code == 401, 10,
               "the key to stop working")
    wait_until(lambda: stack.post(T2I, fooocus_text_to_image(), bearer=tokens["access_token"]).status_code == 401,
               10, "the access token to stop working")
    refreshed = requests.post(f"{stack.url}/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, timeout=30)
    assert refreshed.status_code in (400, 401), refreshed.text
    keys = {k["id"]: k for k in stack.list_keys()}
    assert keys[key.split("_")[1]]["status"] == "revoked"


def test_errors_use_the_scim_schema(stack):
    r = scim(stack, "GET", "/Users/does-not-exist")
    assert r.status_code == 404 and r.json()["status"] == "404", r.text
    r = scim(stack, "GET", '/Users?filter=title co "x"')
    assert r.status_code == 400 and r.json()["scimType"] == "invalidFilter", r.text
    r = scim(stack, "POST", "/Users", {"name": {"givenName": "x"}})
    assert r.status_code == 400 and r.json()["scimType"] == "invalidValue", r.text
