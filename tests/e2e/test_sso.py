"""Browser single sign-on through the real Envoy: inferguard as the relying party of a real
OpenID Provider (npm `oidc-provider`, tests/oidc/provider.mjs) on loopback.

The headline test drives Debian's chromium (npm playwright-core): protected page -> the IdP's
login form -> signed in -> back on the page, the upstream sees the user's identity, the session
cookie has the `__Host-` flags; step-up for a `require_mfa` page; logout ends the session and
the IdP's, and the next visit goes back to the IdP.

The attacks and revocations walk the same flow with `requests` (sso_support.Browserless), so
they can forge, replay and tamper: state, codes, nonces, cookies, open redirects, revoked and
disabled users, back-channel logout.
"""

from __future__ import annotations

import time

import pytest
import requests

from conftest import UPSTREAM_API_KEY, assert_refused, running_stack
from oidc_support import OpenIDProvider, claims_of, forge
from sso_support import (
    LOGIN_COOKIE_PREFIX,
    OTP,
    SESSION_COOKIE,
    SSO_POLICY_YAML,
    WEB_CLIENT_ID,
    Browserless,
    cookie_attributes,
    op_backchannel,
    op_logins,
    password,
    query_of,
    register_web_client,
    run_browser,
    set_cookies,
    sso_identity,
    wait_refused,
)

USERS = {
    # username: groups at the IdP
    "alice": ["fooocus_designers_basic"],
    "bob": ["fooocus_designers_advanced"],
    "erin": ["fooocus_designers_basic"],
    "frank": ["fooocus_designers_basic"],
    "gina": ["fooocus_designers_basic"],
    "hugo": ["fooocus_admins"],
}


@pytest.fixture(scope="module")
def op(tmp_path_factory):
    provider = OpenIDProvider(tmp_path_factory.mktemp("op"), name="sso-op").start()
    for user, groups in USERS.items():
        provider.set_user(user, groups=groups, department="design")
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, op):
    work = tmp_path_factory.mktemp("sso")
    identity = sso_identity(op, work / "oidc-client-secret")
    with running_stack(work, identity=identity, policy_yaml=SSO_POLICY_YAML) as s:
        s.extra_logs.append(("OpenID Provider log", op.log))
        register_web_client(op, s)
        yield s


@pytest.fixture(scope="module")
def mfa_enforced(stack, op) -> bool:
    """Whether the authorizer calls `check_mfa` (src/identity/oidc/mfa.rs) for `require_mfa`
    routes: a password-only session must not open /secure/*."""
    probe = Browserless(stack, op)
    probe.login("hugo")
    return probe.get("/secure/probe", html_page=False).status_code != 200


@pytest.fixture
def browser(stack, op):
    stack.upstream.clear()
    return Browserless(stack, op)


def assert_session_identity(seen, *, subject, role, groups, email=None):
    h = seen.headers
    assert h.get("x-inferguard-subject") == subject, h
    assert h.get("x-inferguard-email") == (email or f"{subject}@example.com"), h
    assert h.get("x-inferguard-groups") == groups, h
    assert h.get("x-inferguard-role") == role, h
    assert h.get("x-inferguard-auth") == "session", h
    assert "x-inferguard-key-id" not in h, h
    assert SESSION_COOKIE not in h.get("cookie", ""), f"the session cookie reached the upstream: {h}"
    assert h.get("x-api-key") == UPSTREAM_API_KEY, h


# --------------------------------------------------------------------------------------------
# The real browser


def test_browser_login_step_up_and_logout(stack, op, tmp_path, mfa_enforced):
    stack.upstream.clear()
    seen_logins = len(op_logins(op))
    result = run_browser(
        {
            "base": stack.url,
            "issuer": op.issuer,
            "username": "alice",
            "password": password("alice"),
            "otp": OTP,
            "page": "/ui/page?x=1",
            "step_up_page": "/secure/page" if mfa_enforced else None,
        },
        tmp_path,
    )
    # Protected page -> the IdP's login form.
    assert result["login_page_url"].startswith(op.issuer + "/interaction/"), result
    assert "Sign in" in result["login_page_title"]
    # Signed in -> back on the page; the upstream saw who it was.
    assert result["after_login_url"] == f"{stack.url}/ui/page?x=1"
    first = next(s for s in stack.upstream.requests if s.path == "/ui/page?x=1")
    assert_session_identity(first, subject="alice", role="designer_basic", groups="fooocus_designers_basic")

    # The session cookie as the browser stored it: __Host- prefix (Secure, Path=/, no
    # Domain), HttpOnly, SameSite=Lax. Chromium treats http://127.0.0.1 as potentially
    # trustworthy, so it keeps Secure cookies there.
    (session,) = [c for c in result["cookies"] if c["name"] == SESSION_COOKIE]
    assert session["secure"] is True and session["httpOnly"] is True, session
    assert session["sameSite"] == "Lax" and session["path"] == "/", session
    assert session["domain"] == "127.0.0.1", session  # host-only: no Domain attribute
    assert not [c for c in result["cookies"] if c["name"].startswith(LOGIN_COOKIE_PREFIX)], "login cookie left over"

    # Logout: the session cookie is gone, the IdP session too (its login form again).
    assert result["logout_page_url"].startswith(op.issuer + "/session/end"), result
    assert result["after_logout_url"].startswith(op.issuer + "/interaction/"), result
    assert not [c for c in result["cookies_after_logout"] if c["name"] == SESSION_COOKIE]
    assert result["revisit_url"].startswith(op.issuer + "/interaction/"), result
    assert "step-up" in result["steps"] or not mfa_enforced

    if not mfa_enforced:
        pytest.fail("require_mfa is not enforced: the authorizer does not call identity::oidc::check_mfa")
    assert result["steps"] == ["idp-login", "signed-in", "step-up", "signed-out", "revisit"]
    # Step-up: the MFA page sent the browser back to the IdP, which asked for a second factor.
    assert result["step_up_first_url"].startswith(op.issuer + "/interaction/"), result
    assert result["step_up_prompt"] is True
    assert result["after_step_up_url"] == f"{stack.url}/secure/page"
    secure = [s for s in stack.upstream.requests if s.path == "/secure/page"]
    assert len(secure) == 1, "the MFA page reached the upstream once, after the step-up"
    logins = op_logins(op)[seen_logins:]
    assert [(entry["username"], entry["amr"]) for entry in logins] == [("alice", ["pwd"]), ("alice", ["pwd", "otp"])]



# --------------------------------------------------------------------------------------------
# The flow, step by step


def test_without_a_session_browsers_go_to_login_and_api_callers_get_401(browser, stack):
    r = browser.get("/ui/page?x=1&y=%2F")
    assert r.status_code == 302, r.text
    assert r.headers["Location"] == "/auth/login?rd=%2Fui%2Fpage%3Fx%3D1%26y%3D%252F"
    body = assert_refused(browser.get("/ui/page", html_page=False), 401, stack.upstream)
    assert body["error"] == "missing_credential"


def test_login_sets_a_host_cookie_and_returns_to_rd(browser, stack, op):
    auth_url = browser.start_login("/ui/page?x=1")
    q = query_of(auth_url)
    assert q["response_type"] == "code" and q["client_id"] == WEB_CLIENT_ID
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert q["state"] and q["nonce"] and q["state"] != q["nonce"]
    assert q["redirect_uri"] == f"{stack.url}/auth/callback"
    assert set(q["scope"].split()) == {"openid", "email", "profile", "groups"}
    assert "prompt" not in q and "acr_values" not in q

    callback = browser.sign_in_at_idp(auth_url, "bob")
    r = browser.finish(callback)
    assert r.status_code == 302 and r.headers["Location"] == "/ui/page?x=1"
    cookies = set_cookies(r)
    value, attrs = cookie_attributes(cookies[SESSION_COOKIE])
    assert len(value) == 43
    assert {"secure", "httponly", "path", "samesite"} <= set(attrs), attrs
    assert attrs["path"] == "/" and attrs["samesite"] == "Lax" and "domain" not in attrs
    login_cookie = [n for n in cookies if n.startswith(LOGIN_COOKIE_PREFIX)]
    assert len(login_cookie) == 1 and cookie_attributes(cookies[login_cookie[0]])[1]["max-age"] == "0"

    r = browser.get("/ui/page?x=1")
    assert r.status_code == 200, r.text
    assert_session_identity(stack.upstream.only(), subject="bob", role="designer_advanced",
                            groups="fooocus_designers_advanced")
    # An API call with the same session works too (SameSite=Lax cookies ride along).
    stack.upstream.clear()
    assert browser.get("/ui/other", html_page=False).status_code == 200

    listed = stack.cli("sessions", "list", args=["--username", "bob", "--format", "json"]).stdout
    assert '"username": "bob"' in listed and value not in listed


def test_forged_state_is_refused(browser, stack):
    # No login cookie at all.
    r = browser.get("/auth/callback?code=abc&state=forged-state", html_page=False)
    assert r.status_code == 400 and r.json()["error"] == "invalid_state"
    # A login cookie made up to match a made-up state: the state is not in the store.
    from hashlib import sha256

    state = "forged-state-0123456789"
    cookie = {f"{LOGIN_COOKIE_PREFIX}{sha256(state.encode()).hexdigest()[:16]}": state}
    r = browser.get(f"/auth/callback?code=abc&state={state}", html_page=False, cookies=cookie)
    assert r.status_code == 400 and r.json()["error"] == "invalid_state"
    # A real state whose cookie another browser holds (login CSRF): refused.
    auth_url = browser.start_login("/ui/page")
    state = query_of(auth_url)["state"]
    r = Browserless(stack, browser.op).get(f"/auth/callback?code=abc&state={state}", html_page=False)
    assert r.status_code == 400 and r.json()["error"] == "invalid_state"
    assert SESSION_COOKIE not in set_cookies(r)


def test_replayed_callback_is_refused(browser, stack):
    callback = browser.sign_in_at_idp(browser.start_login("/ui/page"), "alice")
    login_cookies = dict(browser.cookies)
    assert browser.finish(callback).status_code == 302
    # The same callback again, with the same login cookie: the state was single use.
    other = Browserless(stack, browser.op)
    r = other.finish(callback, cookies=login_cookies)
    assert r.status_code == 400 and "invalid_state" in r.text
    assert SESSION_COOKIE not in set_cookies(r)


def test_reused_code_is_refused(browser, stack):
    first = browser.sign_in_at_idp(browser.start_login("/ui/page"), "alice")
    assert browser.finish(first).status_code == 302
    # A new login (new state, cookie, verifier), answered with the first login's code.
    auth_url = browser.start_login("/ui/page")
    state = query_of(auth_url)["state"]
    code = query_of(first)["code"]
    r = browser.get(f"/auth/callback?code={code}&state={state}", html_page=False)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    assert SESSION_COOKIE not in set_cookies(r)


def test_wrong_nonce_is_refused(browser, stack, op):
    # The OP issues the next ID token with another nonce (a code minted for another request).
    op._admin("POST", "tamper-next-nonce", {})
    callback = browser.sign_in_at_idp(browser.start_login("/ui/page"), "alice")
    before = dict(browser.cookies)
    r = browser.finish(callback)
    assert r.status_code == 400 and "invalid_id_token" in r.text, r.text
    assert SESSION_COOKIE not in set_cookies(r)
    assert browser.cookies.get(SESSION_COOKIE) == before.get(SESSION_COOKIE)


def test_tampered_session_cookie_is_refused(browser, stack):
    browser.login("alice")
    good = browser.session
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    for value in (flipped, good + "x", good[:-1], "not-a-session"):
        r = browser.get("/ui/page", html_page=False, cookies={SESSION_COOKIE: value})
        body = assert_refused(r, 401, stack.upstream)
        assert body["error"] == "invalid_session", body
    assert browser.get("/ui/page", html_page=False).status_code == 200


@pytest.mark.parametrize(
    "rd",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "http://portal.example.com/",
     "/\t/evil.example", "javascript:alert(1)"],
)
def test_rd_to_another_site_is_refused(browser, rd):
    from urllib.parse import quote

    r = browser.get(f"/auth/login?rd={quote(rd, safe='')}", html_page=False)
    assert r.status_code == 400 and r.json()["error"] == "invalid_redirect", (rd, r.text)
    assert "Location" not in r.headers


def test_rd_to_an_allowed_origin(browser):
    r = browser.login("alice", rd="https://portal.example.com/app?x=1")
    assert r.headers["Location"] == "https://portal.example.com/app?x=1"


def test_sessions_revoke_ends_a_live_session_within_two_seconds(browser, stack):
    browser.login("erin")
    assert browser.get("/ui/page", html_page=False).status_code == 200
    out = stack.cli("sessions", "list", args=["--username", "erin"]).stdout
    assert "erin" in out
    stack.cli("sessions", "revoke", args=["--username", "erin"])
    r, waited = wait_refused(lambda: browser.get("/ui/page", html_page=False), 401)
    assert r.json()["error"] == "invalid_session" and waited < 2.0
    assert "erin" not in stack.cli("sessions", "list", args=["--username", "erin"]).stdout


def test_disabled_user_is_refused(browser, stack):
    browser.login("frank")
    assert browser.get("/ui/page", html_page=False).status_code == 200
    stack.cli("users", "set-role", args=["--username", "frank", "--role", "designer_basic"])
    stack.cli("users", "disable", args=["--username", "frank"])
    r, waited = wait_refused(lambda: browser.get("/ui/page", html_page=False), 401)
    assert r.json()["error"] == "disabled_principal" and waited < 2.0
    # And a new login is refused at the callback.
    callback = Browserless(stack, browser.op)
    cb = callback.sign_in_at_idp(callback.start_login("/ui/page"), "frank")
    r = callback.finish(cb)
    assert r.status_code == 403 and "disabled_principal" in r.text


def test_backchannel_logout_ends_a_live_session(browser, stack, op):
    browser.login("gina")
    assert browser.get("/ui/page", html_page=False).status_code == 200
    sent = len(op_backchannel(op))
    browser.logout_at_idp()
    r, _ = wait_refused(lambda: browser.get("/ui/page", html_page=False), 401, timeout=5)
    assert r.json()["error"] == "invalid_session"
    delivered = op_backchannel(op)[sent:]
    assert delivered and all(d["ok"] for d in delivered), delivered


def test_forged_logout_tokens_are_refused(browser, stack, op):
    browser.login("hugo")
    keys = op.signing_keys()
    now = int(time.time())
    event = {"http://schemas.openid.net/event/backchannel-logout": {}}
    base = {"iss": op.issuer, "aud": WEB_CLIENT_ID, "iat": now, "exp": now + 120, "jti": f"j{now}",
            "sub": "hugo", "events": event}
    url = f"{stack.url}/auth/backchannel-logout"
    other_key = dict(keys["ec"], kid="not-the-ops")
    cases = {
        "no events": {k: v for k, v in base.items() if k != "events"},
        "nonce": {**base, "nonce": "n"},
        "wrong audience": {**base, "aud": "someone-else"},
        "wrong issuer": {**base, "iss": "http://127.0.0.1:1"},
    }
    for name, claims in cases.items():
        token = forge({**claims, "jti": f"{name}-{now}"}, keys["rsa"], "RS256", typ="logout+jwt")
        r = requests.post(url, data={"logout_token": token}, timeout=10)
        assert r.status_code == 400, (name, r.status_code, r.text)
    token = forge(base, other_key, "ES256", typ="logout+jwt")
    assert requests.post(url, data={"logout_token": token}, timeout=10).status_code == 400
    assert requests.post(url, data={"nothing": "x"}, timeout=10).status_code == 400
    # The session lived through all of that.
    assert browser.get("/ui/page", html_page=False).status_code == 200

    # A valid one (signed with the OP's key) ends it, once: the same jti again is refused.
    token = forge(base, keys["rsa"], "RS256", typ="logout+jwt")
    assert claims_of(token)["sub"] == "hugo"
    r = requests.post(url, data={"logout_token": token}, timeout=10)
    assert r.status_code == 200, r.text
    assert browser.get("/ui/page", html_page=False).status_code == 401
    assert requests.post(url, data={"logout_token": token}, timeout=10).status_code == 400


def test_step_up_for_mfa_routes(browser, stack, op, mfa_enforced):
    if not mfa_enforced:
        pytest.fail("require_mfa is not enforced: the authorizer does not call identity::oidc::check_mfa")
    browser.login("bob")
    r = browser.get("/secure/page")
    assert r.status_code == 302, f"a password-only session must not reach an MFA page: {r.status_code} {r.text}"
    assert r.headers["Location"] == "/auth/login?rd=%2Fsecure%2Fpage&step_up=1"
    r = browser.get("/secure/page", html_page=False)
    assert_refused(r, 401, stack.upstream)
    www = r.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in www, www

    auth_url = browser.start_login("/secure/page", step_up=True)
    q = query_of(auth_url)
    assert q["prompt"] == "login" and q["acr_values"] == "urn:inferguard:test:mfa"
    # Signing in again without the second factor: no loop back to the page.
    callback = browser.sign_in_at_idp(auth_url, "bob")
    r = browser.finish(callback)
    assert r.status_code == 403 and "mfa_required" in r.text
    # With it: the page opens.
    browser.login("bob", rd="/secure/page", otp=OTP, step_up=True)
    assert browser.get("/secure/page").status_code == 200


def test_logout_clears_the_cookie_and_goes_to_the_idp(browser, stack, op):
    browser.login("alice")
    session = browser.session
    r = browser.get("/auth/logout")
    assert r.status_code == 302
    q = query_of(r.headers["Location"])
    assert r.headers["Location"].startswith(f"{op.issuer}/session/end?")
    assert q["post_logout_redirect_uri"] == f"{stack.url}/" and q["client_id"] == WEB_CLIENT_ID
    assert q["id_token_hint"].count(".") == 2
    assert cookie_attributes(set_cookies(r)[SESSION_COOKIE])[1]["max-age"] == "0"
    r = browser.get("/ui/page", html_page=False, cookies={SESSION_COOKIE: session})
    assert_refused(r, 401, stack.upstream)
