// A real OpenID Provider (the certified `oidc-provider` package) on loopback, for inferguard's
// end-to-end tests (tests/e2e). It issues real JWT access tokens from its real token endpoint,
// publishes its keys by OIDC discovery (/.well-known/openid-configuration -> /jwks), and can
// rotate its RSA signing key while it runs.
//
//   node tests/oidc/provider.mjs --port 4444        (or OIDC_PORT=4444)
//
// Issuer: http://127.0.0.1:<port>. Prints one JSON line {"listening": ..., "issuer": ...} on
// stdout once it accepts connections.
//
// Tokens (POST /token, client authentication client_secret_basic or client_secret_post):
//   * grant_type=urn:inferguard:test:user&username=alice[&resource=urn:inferguard:ES256]
//     A token for a user of the directory below: `sub` is the username, and `email`, `groups`,
//     `department` come from the directory (oidc-provider's `extraTokenClaims`). This is a small
//     custom grant registered with `provider.registerGrantType` (the OP's documented extension
//     point): it stands in for an interactive login, which these tests do not need.
//   * grant_type=client_credentials[&resource=...]  (standard; `sub` is the client id)
//   The resource indicator picks the signing algorithm and audience:
//     urn:inferguard:RS256 | urn:inferguard:PS256 | urn:inferguard:ES256 | urn:inferguard:EdDSA
//       -> aud "inferguard", signed with that algorithm (the default is urn:inferguard:RS256)
//     urn:other-api:RS256 -> aud "other-api" (a token meant for another service)
//
// Browser sign-in (SSO tests): web clients registered with POST /__test/clients use the
// authorization-code flow with PKCE (S256, required), get refresh tokens, RP-initiated logout
// (/session/end) and back-channel logout (logout tokens POSTed to their backchannel_logout_uri,
// session-bound: `sid` in ID and logout tokens). Consent is implied for them (first-party).
//   * Scopes: openid, offline_access, email (email, email_verified), profile (name),
//     groups (groups, department). Scope claims come from /me (userinfo), as oidc-provider
//     does by default; the ID token carries sub, sid, amr, acr, auth_time, nonce.
//   * The login page (/interaction/<uid>) is a plain form: #username, #password, an optional
//     #otp one-time code (123456) and #submit. A password login gives
//     amr ["pwd"] and acr urn:inferguard:test:pwd; with the code, amr ["pwd", "otp"] and acr
//     urn:inferguard:test:mfa. Passwords are `<username>-password` unless set.
//
// Test-only admin endpoints (plain JSON over loopback, never in a real OP):
//   GET  /__test/health
//   POST /__test/users   {"username", "email", "groups": [...], "department", "password"}
//        add or replace
//   POST /__test/clients {"client_id", "client_secret", "redirect_uris": [...],
//        "post_logout_redirect_uris": [...], "backchannel_logout_uri"}  add or replace a web
//        client (the provider is rebuilt behind the same socket, like rotation)
//   GET  /__test/logins     [{"username", "amr", "acr", "at"}...]: completed sign-ins
//   GET  /__test/backchannel [{"client_id", "ok", "error", "at"}...]: logout tokens sent
//   POST /__test/tamper-next-nonce  the next authorization request's `nonce` is replaced, so
//        its ID token carries a nonce the relying party never sent (a code minted for
//        another request)
//   POST /__test/rotate  {"keep_old": true|false}  a new RSA key with a new kid signs from now
//        on; with keep_old the previous public key stays published, without it it is removed.
//        Answers {"kid": new, "previous_kid": old, "published": [kids]}.
//   GET  /__test/keys    the private signing keys as JWKs (so tests can forge tokens with the
//        issuer's real key: expired, not yet valid, wrong issuer...)
//   GET  /__test/fetches {"jwks": [ms since epoch...], "discovery": [...]}: when the keys were
//        fetched, so a test can tell when a relying party last asked.
//
// Rotation builds a new Provider instance with the new key set and swaps it in behind the same
// listening socket: the issuer, port, clients and users stay; nothing restarts.

import crypto from 'node:crypto';
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const USER_GRANT = 'urn:inferguard:test:user';
const CLIENT_ID = 'inferguard-tests';
const CLIENT_SECRET = 'inferguard-tests-secret-0123456789';
const SERVICE_CLIENT_ID = 'svc-batch';
const SERVICE_CLIENT_SECRET = 'svc-batch-secret-0123456789';
const TOKEN_TTL_SECS = 600;

function option(name) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const port = Number(option('port') ?? process.env.OIDC_PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node provider.mjs --port PORT (or OIDC_PORT=PORT)');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

// ---------------------------------------------------------------------------------------------
// Keys

let serial = 0;
function newKey(kind) {
  serial += 1;
  const kid = `${kind}-${serial}-${crypto.randomBytes(4).toString('hex')}`;
  let pair;
  if (kind === 'rsa') {
    pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  } else if (kind === 'ec') {
    pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  } else if (kind === 'ed') {
    pair = crypto.generateKeyPairSync('ed25519');
  } else {
    throw new Error(`unknown key kind ${kind}`);
  }
  // No `alg` on the RSA key: one RSA key signs both RS256 and PS256 tokens.
  return { ...pair.privateKey.export({ format: 'jwk' }), kid, use: 'sig' };
}

const keys = {
  rsa: newKey('rsa'), // signs RS256 and PS256 tokens
  retiredRsa: [], // previous RSA keys still published (rotation with keep_old)
  ec: newKey('ec'), // ES256
  ed: newKey('ed'), // EdDSA (Ed25519)
};

function keySet() {
  return { keys: [keys.rsa, ...keys.retiredRsa, keys.ec, keys.ed] };
}

// ---------------------------------------------------------------------------------------------
// Users (the directory behind the custom user grant)

const users = new Map();
function putUser({ username, email, groups, department, password }) {
  if (typeof username !== 'string' || !username) throw new Error('username is required');
  users.set(username, {
    email: email ?? `${username}@example.com`,
    groups: Array.isArray(groups) ? groups : [],
    department: department ?? 'design',
    password: password ?? `${username}-password`,
  });
}
putUser({ username: 'alice', groups: ['fooocus_designers_basic'], department: 'design' });
putUser({ username: 'bob', groups: ['fooocus_designers_advanced'], department: 'marketing' });
// Service accounts using client_credentials get claims too (looked up by client id).
putUser({ username: SERVICE_CLIENT_ID, groups: ['fooocus_designers_advanced'], department: 'batch' });

// ---------------------------------------------------------------------------------------------
// Resource servers (RFC 8707 resource indicators): audience and signing algorithm

const ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'];

function resourceServer(resource) {
  const m = /^urn:(inferguard|other-api):(RS256|PS256|ES256|EdDSA)$/.exec(resource);
  if (!m) throw new errors.InvalidTarget(`unknown resource ${resource}`);
  const [, audience, alg] = m;
  const sign = { alg };
  if (alg === 'RS256' || alg === 'PS256') sign.kid = keys.rsa.kid; // the current RSA key
  return {
    scope: 'generate',
    audience,
    accessTokenTTL: TOKEN_TTL_SECS,
    accessTokenFormat: 'jwt',
    jwt: { sign },
  };
}

// ---------------------------------------------------------------------------------------------
// Web clients (browser sign-in), sign-ins and back-channel logouts seen

const OTP_CODE = '123456';
const ACR_PWD = 'urn:inferguard:test:pwd';
const ACR_MFA = 'urn:inferguard:test:mfa';
const webClients = new Map();
const logins = [];
let tamperNextNonce = false;
const backchannel = [];

function putWebClient(body) {
  const { client_id: clientId, client_secret: clientSecret } = body;
  if (!clientId || !clientSecret) throw new Error('client_id and client_secret are required');
  const client = {
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: body.redirect_uris ?? [],
    post_logout_redirect_uris: body.post_logout_redirect_uris ?? [],
    token_endpoint_auth_method: 'client_secret_basic',
  };
  if (body.backchannel_logout_uri) {
    client.backchannel_logout_uri = body.backchannel_logout_uri;
    client.backchannel_logout_session_required = true;
  }
  webClients.set(clientId, client);
}

// ---------------------------------------------------------------------------------------------
// The provider

function claimsFor(subject) {
  const user = users.get(subject);
  if (!user) return undefined;
  return { email: user.email, groups: user.groups, department: user.department };
}

function buildProvider() {
  const provider = new Provider(issuer, {
    clients: [
      ...webClients.values(),
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials', USER_GRANT],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: SERVICE_CLIENT_ID,
        client_secret: SERVICE_CLIENT_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: keySet(),
    cookies: { keys: ['inferguard-test-cookie-key'] },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: {
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups', 'department'],
    },
    acrValues: [ACR_PWD, ACR_MFA],
    findAccount: async (_ctx, id) => {
      const user = users.get(id);
      if (!user) return undefined;
      return {
        accountId: id,
        claims: async () => ({
          sub: id,
          email: user.email,
          email_verified: true,
          name: id,
          groups: user.groups,
          department: user.department,
        }),
      };
    },
    pkce: { methods: ['S256'], required: () => true },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    loadExistingGrant: async (ctx) => {
      const { client, session } = ctx.oidc;
      const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
      let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
      if (!webClients.has(client.clientId)) return grant;
      // First-party web clients: consent is implied for whatever they ask.
      if (!grant) grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      grant.addOIDCScope(ctx.oidc.params.scope ?? 'openid');
      await grant.save();
      return grant;
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign out</title></head>
            <body><h1>Sign out of the test IdP?</h1>${form}
            <button id="logout" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
            </body></html>`;
        },
      },
      resourceIndicators: {
        enabled: true,
        // Web clients get opaque access tokens for the userinfo endpoint, no resource.
        defaultResource: (_ctx, client) => (webClients.has(client?.clientId) ? undefined : 'urn:inferguard:RS256'),
        useGrantedResource: (_ctx, model) => !webClients.has(model?.clientId),
        getResourceServerInfo: (_ctx, resource) => resourceServer(resource),
      },
    },
    enabledJWA: {
      idTokenSigningAlgValues: ALGORITHMS,
    },
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? TOKEN_TTL_SECS,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? TOKEN_TTL_SECS,
    },
    extraTokenClaims: async (_ctx, token) => claimsFor(token.accountId ?? token.clientId),
  });

  provider.registerGrantType(
    USER_GRANT,
    async (ctx, next) => {
      const { client, params } = ctx.oidc;
      const { username } = params;
      if (!username) throw new errors.InvalidRequest('missing required parameter username');
      if (!users.has(username)) throw new errors.InvalidGrant('unknown user');
      const resource = params.resource ?? 'urn:inferguard:RS256';
      const info = resourceServer(resource);
      const token = new provider.AccessToken({
        accountId: username,
        client,
        gty: USER_GRANT,
        scope: info.scope,
      });
      token.resourceServer = new provider.ResourceServer(resource, info);
      const value = await token.save();
      ctx.body = {
        access_token: value,
        token_type: 'Bearer',
        expires_in: token.expiration,
        scope: token.scope,
      };
      await next();
    },
    ['username', 'resource', 'scope'],
  );

  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  provider.on('backchannel.success', (_ctx, client) => {
    backchannel.push({ client_id: client.clientId, ok: true, at: Date.now() });
  });
  provider.on('backchannel.error', (_ctx, err, client) => {
    console.error('backchannel.error', client.clientId, String(err?.message ?? err));
    backchannel.push({ client_id: client.clientId, ok: false, error: String(err?.message ?? err), at: Date.now() });
  });
  return provider;
}

let provider = buildProvider();
let handler = provider.callback();

// ---------------------------------------------------------------------------------------------
// Admin endpoints and the listener

const fetches = { jwks: [], discovery: [] };

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text ? JSON.parse(text) : {});
      } catch (e) {
        reject(e);
      }
    });
    req.on('error', reject);
  });
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(res, uid, params, error) {
  const stepUp = String(params.acr_values ?? '').includes(ACR_MFA);
  const html = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign in</title></head><body>
    <h1>Sign in to the test IdP</h1>
    ${stepUp ? '<p id="step-up">This page needs a second factor: enter your one-time code.</p>' : ''}
    ${error ? `<p id="error">${escapeHtml(error)}</p>` : ''}
    <form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
      <label>Username <input id="username" name="username" autofocus></label>
      <label>Password <input id="password" name="password" type="password"></label>
      <label>One-time code <input id="otp" name="otp" inputmode="numeric"></label>
      <button id="submit" type="submit">Sign in</button>
    </form></body></html>`;
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

// The interaction (login) pages of the browser flow.
async function interaction(req, res) {
  const [, , uid, action] = req.url.split('?')[0].split('/');
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) throw new Error('interaction mismatch');
    const { prompt, params } = details;
    if (req.method === 'GET' && !action) {
      if (prompt.name === 'login') return loginPage(res, uid, params);
      // Consent (scopes a grant lacks): first-party, granted at once.
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
      grant.addOIDCScope(params.scope ?? 'openid');
      const grantId = await grant.save();
      return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    if (req.method === 'POST' && action === 'login') {
      const form = await readForm(req);
      const username = form.get('username') ?? '';
      const user = users.get(username);
      if (!user || form.get('password') !== user.password) {
        return loginPage(res, uid, params, 'Wrong username or password.');
      }
      const otp = form.get('otp') ?? '';
      if (otp && otp !== OTP_CODE) return loginPage(res, uid, params, 'Wrong one-time code.');
      const amr = otp ? ['pwd', 'otp'] : ['pwd'];
      const acr = otp ? ACR_MFA : ACR_PWD;
      logins.push({ username, amr, acr, at: Date.now() });
      return provider.interactionFinished(
        req,
        res,
        { login: { accountId: username, amr, acr, remember: true } },
        { mergeWithLastSubmission: false },
      );
    }
    return reply(res, 404, { error: 'not_found' });
  } catch (e) {
    console.error('interaction error', String(e?.message ?? e));
    return reply(res, 400, { error: String(e?.message ?? e) });
  }
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function admin(req, res) {
  const path = req.url.split('?')[0];
  try {
    if (req.method === 'GET' && path === '/__test/health') {
      return reply(res, 200, { ok: true, issuer });
    }
    if (req.method === 'POST' && path === '/__test/users') {
      putUser(await readJson(req));
      return reply(res, 200, { ok: true });
    }
    if (req.method === 'POST' && path === '/__test/clients') {
      putWebClient(await readJson(req));
      provider = buildProvider();
      handler = provider.callback();
      return reply(res, 200, { ok: true });
    }
    if (req.method === 'POST' && path === '/__test/tamper-next-nonce') {
      tamperNextNonce = true;
      return reply(res, 200, { ok: true });
    }
    if (req.method === 'GET' && path === '/__test/logins') {
      return reply(res, 200, logins);
    }
    if (req.method === 'GET' && path === '/__test/backchannel') {
      return reply(res, 200, backchannel);
    }
    if (req.method === 'POST' && path === '/__test/rotate') {
      const { keep_old: keepOld = false } = await readJson(req);
      const previous = keys.rsa;
      keys.rsa = newKey('rsa');
      keys.retiredRsa = keepOld ? [previous, ...keys.retiredRsa] : [];
      provider = buildProvider();
      handler = provider.callback();
      console.log(JSON.stringify({ rotated: keys.rsa.kid, previous: previous.kid, keep_old: keepOld }));
      return reply(res, 200, {
        kid: keys.rsa.kid,
        previous_kid: previous.kid,
        published: keySet().keys.map((k) => k.kid),
      });
    }
    if (req.method === 'GET' && path === '/__test/keys') {
      return reply(res, 200, { rsa: keys.rsa, retired_rsa: keys.retiredRsa, ec: keys.ec, ed: keys.ed });
    }
    if (req.method === 'GET' && path === '/__test/fetches') {
      return reply(res, 200, fetches);
    }
    return reply(res, 404, { error: 'not_found' });
  } catch (e) {
    return reply(res, 400, { error: String(e.message ?? e) });
  }
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/__test/')) {
    admin(req, res);
    return;
  }
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res);
    return;
  }
  const path = req.url.split('?')[0];
  if (path === '/auth' && tamperNextNonce) {
    const url = new URL(req.url, issuer);
    if (url.searchParams.has('nonce')) {
      url.searchParams.set('nonce', `tampered-${crypto.randomBytes(8).toString('hex')}`);
      req.url = `${url.pathname}${url.search}`;
      tamperNextNonce = false;
    }
  }
  if (path === '/jwks') fetches.jwks.push(Date.now());
  if (path === '/.well-known/openid-configuration') fetches.discovery.push(Date.now());
  handler(req, res);
});

server.listen(port, '127.0.0.1', () => {
  console.log(JSON.stringify({ listening: port, issuer }));
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
