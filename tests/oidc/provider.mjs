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
// Test-only admin endpoints (plain JSON over loopback, never in a real OP):
//   GET  /__test/health
//   POST /__test/users   {"username", "email", "groups": [...], "department"}   add or replace
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
function putUser({ username, email, groups, department }) {
  if (typeof username !== 'string' || !username) throw new Error('username is required');
  users.set(username, {
    email: email ?? `${username}@example.com`,
    groups: Array.isArray(groups) ? groups : [],
    department: department ?? 'design',
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
// The provider

function claimsFor(subject) {
  const user = users.get(subject);
  if (!user) return undefined;
  return { email: user.email, groups: user.groups, department: user.department };
}

function buildProvider() {
  const provider = new Provider(issuer, {
    clients: [
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
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:inferguard:RS256',
        useGrantedResource: () => true,
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
  const path = req.url.split('?')[0];
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
