// Drives a real browser (Debian's chromium through npm playwright-core; no bundled browser)
// through inferguard's single sign-on for the end-to-end tests (tests/e2e/test_sso.py):
//
//   node sso_flow.mjs '{"base": "http://127.0.0.1:<envoy>", "issuer": "http://127.0.0.1:<op>",
//                       "username": "alice", "password": "…", "otp": "123456",
//                       "page": "/ui/page?x=1", "step_up_page": "/secure/page",
//                       "chromium": "/usr/bin/chromium", "screenshot_dir": "/tmp/…"}'
//
// 1. opens the protected page and expects the IdP's login form; signs in;
// 2. expects to be back on the page (the upstream's answer) and reports the cookies;
// 3. with step_up_page: opens it, expects the IdP's login form again (step-up) and signs in
//    with the one-time code;
// 4. signs out through /auth/logout, confirms at the IdP, and expects to land on the IdP's
//    login form again (the post-logout page `/` needs a session); then opens the page again
//    and expects the login form (the IdP session is gone too).
//
// Prints one JSON line with what it saw (`error` when a step failed) and exits 0.

import { chromium } from 'playwright-core';

const args = JSON.parse(process.argv[2] ?? '{}');
const { base, issuer, username, password } = args;
const out = { steps: [] };
const STEP_TIMEOUT = 15000;

const browser = await chromium.launch({
  executablePath: args.chromium ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
});
const context = await browser.newContext();
const page = await context.newPage();
page.setDefaultTimeout(STEP_TIMEOUT);

const onIdpLogin = (url) => url.href.startsWith(`${issuer}/interaction/`);
const cookies = async () =>
  (await context.cookies(base)).map((c) => ({
    name: c.name,
    httpOnly: c.httpOnly,
    secure: c.secure,
    sameSite: c.sameSite,
    path: c.path,
    domain: c.domain,
    expires: c.expires,
  }));

async function signIn(withOtp) {
  await page.waitForSelector('#username');
  await page.fill('#username', username);
  await page.fill('#password', password);
  if (withOtp) await page.fill('#otp', args.otp);
  await page.click('#submit');
}

async function shot(name) {
  if (args.screenshot_dir) await page.screenshot({ path: `${args.screenshot_dir}/${name}.png` });
}

try {
  // 1. A protected page sends the browser to the IdP.
  await page.goto(`${base}${args.page}`);
  await page.waitForURL(onIdpLogin);
  out.login_page_url = page.url();
  out.login_page_title = await page.textContent('h1');
  await shot('1-idp-login');
  out.steps.push('idp-login');

  // 2. Signed in: back on the page.
  await signIn(false);
  await page.waitForURL((u) => u.href === `${base}${args.page}`);
  out.after_login_url = page.url();
  out.after_login_body = await page.textContent('body');
  out.cookies = await cookies();
  await shot('2-signed-in');
  out.steps.push('signed-in');

  // 3. Step-up for a page that needs MFA.
  if (args.step_up_page) {
    await page.goto(`${base}${args.step_up_page}`);
    await page.waitForURL((u) => onIdpLogin(u) || u.href === `${base}${args.step_up_page}`);
    out.step_up_first_url = page.url();
    if (onIdpLogin(new URL(page.url()))) {
      out.step_up_prompt = await page.isVisible('#step-up');
      await shot('3-step-up');
      await signIn(true);
      await page.waitForURL((u) => u.href === `${base}${args.step_up_page}`);
    }
    out.after_step_up_url = page.url();
    out.after_step_up_body = await page.textContent('body');
    out.steps.push('step-up');
  }

  // 4. Logout: the IdP asks to confirm, then the browser comes back to `/`, which needs a
  // session again: the IdP's login form.
  await page.goto(`${base}/auth/logout`);
  await page.waitForSelector('#logout');
  out.logout_page_url = page.url();
  await page.click('#logout');
  await page.waitForURL(onIdpLogin);
  out.after_logout_url = page.url();
  out.cookies_after_logout = await cookies();
  await shot('4-signed-out');
  out.steps.push('signed-out');

  // 5. The next visit goes back to the IdP (no session here, none there).
  await page.goto(`${base}${args.page}`);
  await page.waitForURL(onIdpLogin);
  await page.waitForSelector('#username');
  out.revisit_url = page.url();
  out.steps.push('revisit');
} catch (e) {
  out.error = String(e?.stack ?? e);
  out.url = page.url();
  out.content = (await page.content().catch(() => '')).slice(0, 3000);
}
await browser.close();
console.log(JSON.stringify(out));
