"""Session lifetimes with small timeouts (a dedicated stack: idle 3 s, absolute 6 s, group
claims refreshed after 1 s): the idle timeout slides with activity, the absolute one does not;
stale group claims are refreshed with the refresh token (a changed IdP group changes the role);
a refresh the IdP refuses (its session ended) ends the inferguard session.

The web client has no back-channel logout URI here, so an IdP logout is only noticed by the
refresh.
"""

from __future__ import annotations

import time

import pytest

from conftest import running_stack
from oidc_support import OpenIDProvider
from sso_support import SSO_POLICY_YAML, Browserless, register_web_client, sso_identity

IDLE = 3.0
ABSOLUTE = 6.0


@pytest.fixture(scope="module")
def op(tmp_path_factory):
    provider = OpenIDProvider(tmp_path_factory.mktemp("op"), name="sso-timeouts-op").start()
    for user in ("ida", "abe", "hank", "ivan"):
        provider.set_user(user, groups=["fooocus_designers_basic"])
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, op):
    work = tmp_path_factory.mktemp("sso-timeouts")
    identity = sso_identity(
        op,
        work / "oidc-client-secret",
        session={"idle_timeout": "3s", "absolute_timeout": "6s"},
        groups_max_age="1s",
    )
    with running_stack(work, identity=identity, policy_yaml=SSO_POLICY_YAML) as s:
        s.extra_logs.append(("OpenID Provider log", op.log))
        register_web_client(op, s, backchannel=False)
        yield s


def api(browser: Browserless, path: str = "/ui/page"):
    return browser.get(path, html_page=False)


def test_idle_timeout(stack, op):
    b = Browserless(stack, op)
    b.login("ida")
    assert api(b).status_code == 200
    time.sleep(IDLE + 1.2)
    r = api(b)
    assert r.status_code == 401 and r.json()["error"] == "session_expired", r.text
    assert api(b).status_code == 401, "an expired session stays ended"
    # A browser with the stale cookie is sent to sign in again, back to the same page.
    r = b.get("/ui/page?x=1")
    assert r.status_code == 302, f"a browser with an expired session must go to the login: {r.status_code} {r.text}"
    assert r.headers["Location"] == "/auth/login?rd=%2Fui%2Fpage%3Fx%3D1"


def test_activity_slides_the_idle_timeout_but_not_the_absolute_one(stack, op):
    b = Browserless(stack, op)
    b.login("abe")
    start = time.monotonic()
    # Active every 1.5 s: well within the idle timeout each time.
    while time.monotonic() - start < ABSOLUTE - 1.5:
        assert api(b).status_code == 200, f"refused after {time.monotonic() - start:.1f}s"
        time.sleep(1.5)
    assert time.monotonic() - start > IDLE + 0.5, "the session outlived one idle period"
    time.sleep(max(0.0, ABSOLUTE + 1.2 - (time.monotonic() - start)))
    r = api(b)
    assert r.status_code == 401 and r.json()["error"] == "session_expired", r.text


def test_group_claims_are_refreshed(stack, op):
    b = Browserless(stack, op)
    b.login("hank")
    stack.upstream.clear()
    assert api(b).status_code == 200
    assert stack.upstream.only().headers["x-inferguard-role"] == "designer_basic"
    op.set_user("hank", groups=["fooocus_admins"])
    time.sleep(1.3)
    stack.upstream.clear()
    assert api(b).status_code == 200
    seen = stack.upstream.only().headers
    assert seen["x-inferguard-groups"] == "fooocus_admins", seen
    assert seen["x-inferguard-role"] == "admin", seen


def test_a_refused_refresh_ends_the_session(stack, op):
    b = Browserless(stack, op)
    b.login("ivan")
    assert api(b).status_code == 200
    # The IdP session ends (no back-channel here): its session-bound refresh token dies.
    b.logout_at_idp()
    time.sleep(1.3)
    r = api(b)
    assert r.status_code == 401 and r.json()["error"] == "invalid_session", r.text
