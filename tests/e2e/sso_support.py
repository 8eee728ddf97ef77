"""Browser single sign-on (SSO) against the real OpenID Provider of tests/oidc/provider.mjs.

* `sso_identity(op, secret_file, ...)` — the `identity:` section turning SSO on, trusting the OP
  as `identity.oidc` with the web client `inferguard-web`.
* `register_web_client(op, stack)` — registers that client at the OP with the stack's Envoy
  origin as redirect URI, post-logout URI and back-channel logout URI (the OP is started before
  the stack, whose ports it cannot know earlier).
* `Browserless` — walks the login flow as a browser would, with `requests`: the OP's cookies in a
  session, inferguard's cookies by hand (they are `Secure`, and requests only returns Secure
  cookies over https), so negative tests can replay, forge and tamper.
* `run_browser(...)` — the real thing: Debian's chromium driven by npm playwright-core
  (tests/e2e/browser/sso_flow.mjs).
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import pytest
import requests

from conftest import REPO
from oidc_support import OIDC_POLICY_YAML, OpenIDProvider, node_bin

WEB_CLIENT_ID = "inferguard-web"
WEB_CLIENT_SECRET = "inferguard-web-secret-0123456789"
SESSION_COOKIE = "__Host-inferguard-session"
LOGIN_COOKIE_PREFIX = "__Host-inferguard-login-"
ACR_MFA = "urn:inferguard:test:mfa"
OTP = "123456"
BROWSER_DIR = REPO / "tests" / "e2e" / "browser"
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")

# The e2e policy with IdP groups, plus pages for browsers: /ui/* for any signed-in role, and
# /secure/* that needs multi-factor authentication.
SSO_POLICY_YAML = (
    OIDC_POLICY_YAML
    + "routes:\n"
    + "  - {method: GET, path: /, permission: generation:view}\n"
    + "  - {method: GET, path: /ui/*, permission: generation:view}\n"
    + "  - {method: GET, path: /secure/*, permission: generation:view, require_mfa: true}\n"
)


def password(username: str) -> str:
    """The OP's default password of a user."""
    return f"{username}-password"


def sso_identity(op: OpenIDProvider, secret_file: Path, **oidc) -> dict:
    """`identity:` with API keys and `identity.oidc` trusting `op` (extra `oidc` keys override)."""
    secret_file.write_text(WEB_CLIENT_SECRET + "\n")
    section = {
        "issuer": op.issuer,
        "client_id": WEB_CLIENT_ID,
        "client_secret_file": str(secret_file),
        "scopes": ["openid", "email", "profile", "groups"],
        "mfa_acr_values": [ACR_MFA],
        "allowed_redirect_origins": ["https://portal.example.com"],
        "claims": {"attributes": {"department": "department"}},
    }
    section.update(oidc)
    return {"api_keys": {"headers": ["x-api-key"]}, "oidc": section}


def register_web_client(op: OpenIDProvider, stack, backchannel: bool = True):
    body = {
        "client_id": WEB_CLIENT_ID,
        "client_secret": WEB_CLIENT_SECRET,
        "redirect_uris": [f"{stack.url}/auth/callback"],
        "post_logout_redirect_uris": [f"{stack.url}/"],
    }
    if backchannel:
        body["backchannel_logout_uri"] = f"{stack.url}/auth/backchannel-logout"
    op._admin("POST", "clients", body)


def op_logins(op: OpenIDProvider) -> list[dict]:
    return op._admin("GET", "logins")


def op_backchannel(op: OpenIDProvider) -> list[dict]:
    return op._admin("GET", "backchannel")


def set_cookies(resp) -> dict[str, str]:
    """name -> the whole Set-Cookie line, for every cookie the response sets."""
    out = {}
    for line in resp.raw.headers.getlist("Set-Cookie"):
        name = line.split("=", 1)[0].strip()
        out[name] = line
    return out


def cookie_attributes(line: str) -> tuple[str, dict[str, str]]:
    """(value, {lower-case attribute: value}) of one Set-Cookie line."""
    first, *attrs = [p.strip() for p in line.split(";")]
    value = first.split("=", 1)[1]
    parsed = {}
    for a in attrs:
        k, _, v = a.partition("=")
        parsed[k.lower()] = v
    return value, parsed


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class Browserless:
    """One "browser" walking the SSO flow with requests."""

    def __init__(self, stack, op: OpenIDProvider):
        self.stack = stack
        self.op = op
        self.op_http = requests.Session()
        self.cookies: dict[str, str] = {}

    # --- inferguard (through Envoy)

    def absorb(self, resp):
        for name, line in set_cookies(resp).items():
            value, attrs = cookie_attributes(line)
            if attrs.get("max-age") == "0" or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def get(self, path: str, *, html_page: bool = True, cookies: dict | None = None, headers: dict | None = None):
        """GET through Envoy without following redirects; inferguard's cookies are sent."""
        jar = self.cookies if cookies is None else cookies
        h = {"Accept": "text/html,application/xhtml+xml" if html_page else "application/json"}
        if jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        h.update(headers or {})
        resp = requests.get(self.stack.url + path, headers=h, allow_redirects=False, timeout=30)
        self.absorb(resp)
        return resp

    def start_login(self, rd: str = "/ui/page", step_up: bool = False) -> str:
        """GET /auth/login?rd=…: returns the OP's authorization URL."""
        path = f"/auth/login?rd={quote(rd, safe='')}" + ("&step_up=1" if step_up else "")
        r = self.get(path)
        assert r.status_code == 302, f"/auth/login answered {r.status_code}: {r.text[:300]}"
        location = r.headers["Location"]
        assert location.startswith(self.op.issuer + "/"), location
        return location

    def sign_in_at_idp(self, auth_url: str, username: str, pw: str | None = None, otp: str = "") -> str:
        """Follows the OP from the authorization URL through its login form; returns the
        callback URL the OP redirects to (not followed)."""
        resp = self.op_http.get(auth_url, allow_redirects=False, timeout=10)
        submitted = False
        for _ in range(15):
            if resp.is_redirect:
                location = urljoin(resp.url, resp.headers["Location"])
                if location.startswith(self.stack.url + "/"):
                    return location
                resp = self.op_http.get(location, allow_redirects=False, timeout=10)
                continue
            if resp.status_code == 200 and 'id="username"' in resp.text:
                if submitted:
                    err = re.search(r'<p id="error">(.*?)</p>', resp.text)
                    raise AssertionError(f"the OP refused the login: {err.group(1) if err else resp.text[:300]}")
                action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', resp.text).group(1))
                resp = self.op_http.post(
                    urljoin(resp.url, action),
                    data={"username": username, "password": pw or password(username), "otp": otp},
                    allow_redirects=False,
                    timeout=10,
                )
                submitted = True
                continue
            raise AssertionError(f"unexpected answer from the OP: {resp.status_code} {resp.url}\n{resp.text[:500]}")
        raise AssertionError("too many redirects at the OP")

    def finish(self, callback_url: str, cookies: dict | None = None):
        """Delivers the OP's redirect to /auth/callback (through Envoy)."""
        return self.get(path_of(callback_url), cookies=cookies)

    def login(self, username: str, rd: str = "/ui/page", otp: str = "", step_up: bool = False):
        """The whole flow; returns the callback's response (302 to `rd` on success)."""
        callback = self.sign_in_at_idp(self.start_login(rd, step_up), username, otp=otp)
        resp = self.finish(callback)
        assert resp.status_code == 302, f"callback answered {resp.status_code}: {resp.text[:300]}"
        assert SESSION_COOKIE in self.cookies, "no session cookie after the callback"
        return resp

    @property
    def session(self) -> str:
        return self.cookies[SESSION_COOKIE]

    # --- the OP

    def logout_at_idp(self):
        """Ends the OP session directly at its end_session endpoint (not through inferguard):
        the OP then sends logout tokens to the clients' back-channel URIs."""
        r = self.op_http.get(f"{self.op.issuer}/session/end", params={"client_id": WEB_CLIENT_ID}, timeout=10)
        assert r.status_code == 200 and 'id="op.logoutForm"' in r.text, r.text[:300]
        action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', r.text).group(1))
        xsrf = re.search(r'name="xsrf" value="([^"]+)"', r.text).group(1)
        r = self.op_http.post(urljoin(r.url, action), data={"xsrf": xsrf, "logout": "yes"},
                              allow_redirects=False, timeout=10)
        assert r.status_code in (302, 303, 200), r.text[:300]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def wait_refused(fn, status: int, timeout: float = 2.5, interval: float = 0.1):
    """Polls fn() until its response has `status`; returns (response, seconds waited)."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        last = fn()
        if last.status_code == status:
            return last, time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"still {last.status_code} after {timeout}s: {last.text[:300]}")


# --------------------------------------------------------------------------------------------
# The real browser


def browser_ready():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-test-tools (apt-get install chromium)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail(f"{BROWSER_DIR}/node_modules/playwright-core is missing: run scripts/install-test-tools")


def run_browser(scenario: dict, workdir: Path, timeout: float = 90) -> dict:
    """Runs tests/e2e/browser/sso_flow.mjs with `scenario` (JSON) and returns what it saw."""
    browser_ready()
    scenario = {"chromium": CHROMIUM, "screenshot_dir": str(workdir), **scenario}
    proc = subprocess.run(
        [node_bin(), str(BROWSER_DIR / "sso_flow.mjs"), json.dumps(scenario)],
        capture_output=True, text=True, timeout=timeout, cwd=BROWSER_DIR,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, (
        f"the browser driver failed (exit {proc.returncode})\nstdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
    )
    result = json.loads(lines[-1])
    assert "error" not in result, f"browser scenario failed: {json.dumps(result, indent=2)[:4000]}"
    return result


__all__ = [
    "ACR_MFA", "Browserless", "LOGIN_COOKIE_PREFIX", "OTP", "SESSION_COOKIE", "SSO_POLICY_YAML", "WEB_CLIENT_ID",
    "cookie_attributes", "op_backchannel", "op_logins", "password", "path_of", "query_of", "register_web_client",
    "run_browser", "set_cookies", "sso_identity", "wait_refused",
]
