// Upstream OIDC IdP for ssogate tests: panva's oidc-provider 9.13.3 on 127.0.0.1:0.
//
// Run:  node server.mjs CONFIG.json   (see ../README.md for the CONFIG format)
// Ready: prints ONE line on stdout: {"issuer":"http://127.0.0.1:PORT","port":PORT}
// Stops on stdin end (parent test died), SIGTERM or SIGINT. Everything else goes to stderr.
//
// Login without a browser (HTTP client with a cookie jar, no JavaScript):
//   A. login_hint shortcut, redirects only:
//      GET  /auth?client_id=..&response_type=code&scope=openid email profile&redirect_uri=..
//               &state=..&nonce=..&code_challenge=..&code_challenge_method=S256&login_hint=SUB
//        -> 303 /interaction/UID        (sets _interaction, _interaction_resume cookies)
//      GET  /interaction/UID            -> 303 ISSUER/auth/UID  (login as SUB done here)
//      GET  ISSUER/auth/UID             -> 303 REDIRECT_URI?code=..&state=..&iss=..
//   B. form:
//      GET  /auth?...(no login_hint)    -> 303 /interaction/UID
//      GET  /interaction/UID            -> 200 HTML form (POST /interaction/UID/login, field `login`)
//      POST /interaction/UID/login  login=SUB (application/x-www-form-urlencoded)
//                                       -> 303 ISSUER/auth/UID
//      GET  ISSUER/auth/UID             -> 303 REDIRECT_URI?code=..&state=..&iss=..
//      POST /interaction/UID/abort      -> 303 ISSUER/auth/UID -> 303 REDIRECT_URI?error=access_denied&..
//   Consent is always granted automatically (loadExistingGrant + a consent auto-grant),
//   so one login (or none, with a live _session cookie) is all it takes. A login_hint
//   naming another known account than the session's forces a new login; oidc-provider
//   then answers GET ISSUER/auth/UID with a 200 auto-submitting form (POST
//   /session/end/confirm, hidden xsrf + logout=yes) that ends the old session: post it
//   (or use a fresh cookie jar), then the 303 chain goes on to the code.
//   Then: POST /token (client_secret_basic or _post) grant_type=authorization_code,
//   code, redirect_uri, code_verifier; GET /me with the access token; discovery at
//   /.well-known/openid-configuration; revocation at /token/revocation.
//
// Test control (no auth; loopback test peer only):
//   POST   /__test/accounts/SUB  JSON claims object -> replaces (or creates) that account
//   DELETE /__test/accounts/SUB                     -> removes it
//   POST   /__test/rotate-keys   optional {"keep_old":true} -> fresh RS256 + ES256 keys
//                                (new keys sign; old ones stay in JWKS only with keep_old)
//   POST   /__test/clients/ID/redirect_uris  {"uri": URL} -> the client also accepts URL
//                                (a connection whose callback is known only once its form opens)
//   POST   /__test/clients/ID/jwks_uri  {"uri": URL} -> the client's keys (private_key_jwt) are there
//
// Vendor shapes (issue #15), all optional in CONFIG:
//   id_token_issuer: "{host}" | {"SUB": "{issuer}/{tid}/v2.0", ...} -> the ID token's iss
//                    rewritten (and re-signed): {issuer}, {host} (no scheme), {tid} (the account's)
//   tenant_discovery: true -> GET /SEG/v2.0/.well-known/openid-configuration names the issuer
//                    ISSUER/{tenantid}/v2.0 (Entra ID common/organizations); no iss in
//                    authorization responses
//   client_auth_methods: [...] -> oidc-provider's clientAuthMethods and discovery's
//                    token_endpoint_auth_methods_supported
//   Accounts may carry tid, oid, hd, hasgroups and _claim_names/_claim_sources (overage);
//   all_groups is what POST /__groups (bearer access token) lists, as Graph's getMemberObjects.
//
// PKCE: oidc-provider 9 implements S256 only (hard-coded). When CONFIG.pkce_methods holds
// "plain", a small pre-middleware on GET /auth turns a plain challenge c into the S256
// challenge BASE64URL(SHA256(c)); the token endpoint then accepts exactly verifier == c.
// A method missing from pkce_methods is refused by oidc-provider (invalid_request).

import { readFileSync } from 'node:fs';
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign as cryptoSign } from 'node:crypto';
import { createServer } from 'node:http';

// oidc-provider prints notices with console.info: keep stdout for the ready line only.
console.info = console.log = (...args) => console.error(...args);
const { default: Provider, interactionPolicy } = await import('oidc-provider');

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = { ...(config.accounts || {}) };
const pkceMethods = config.pkce_methods || ['S256'];
const pkceRequired = config.pkce_required === true;
const claimsInIdToken = config.claims_in_id_token !== false;
const cookieKeys = [randomBytes(32).toString('base64url')];

function newKeys() {
  const kid = () => randomBytes(8).toString('hex');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return [
    { ...rsa.export({ format: 'jwk' }), kid: kid(), alg: 'RS256', use: 'sig' },
    { ...ec.export({ format: 'jwk' }), kid: kid(), alg: 'ES256', use: 'sig' },
  ];
}

// Auto-consent: the grant always covers every OIDC scope and claim the request asks for.
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  if (!grant || grant.accountId !== oidc.session.accountId) {
    grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
  }
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  if (oidc.requestParamClaims.size) grant.addOIDCClaims([...oidc.requestParamClaims]);
  await grant.save();
  return grant;
}

async function findAccount(_ctx, sub) {
  if (!accounts[sub]) return undefined;
  return {
    accountId: sub,
    async claims(use) {
      if (use === 'id_token' && !claimsInIdToken) return { sub };
      return { ...(accounts[sub] || {}), sub };
    },
  };
}

function policy() {
  const { base, Check } = interactionPolicy;
  const p = base();
  p.get('login').checks.add(new Check('login_hint_other_account',
    'login_hint names another account than the session', (ctx) => {
      const hint = ctx.oidc.params.login_hint;
      const sub = ctx.oidc.session.accountId;
      return hint && accounts[hint] && sub && sub !== hint
        ? Check.REQUEST_PROMPT : Check.NO_NEED_TO_PROMPT;
    }));
  return p;
}

const b64sha256 = (s) => createHash('sha256').update(s).digest('base64url');

// Vendor shapes (issue #15): the ID token's iss rewritten and re-signed with the same key.
// CONFIG.id_token_issuer is a template, or an object from account (sub) to template:
// {issuer} the real issuer, {host} the issuer without its scheme (Google's legacy
// "accounts.google.com" form), {tid} the account's tid claim (Entra ID multi-tenant).
function issuerFor(sub) {
  const t = config.id_token_issuer;
  const template = typeof t === 'string' ? t : (t && t[sub]);
  if (!template) return undefined;
  const tid = (accounts[sub] || {}).tid || '';
  return template.replaceAll('{issuer}', issuer).replaceAll('{host}', issuer.replace(/^https?:\/\//, '')).replaceAll('{tid}', tid);
}

function resign(jwt) {
  const [h, p] = jwt.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  const iss = issuerFor(payload.sub);
  if (!iss) return jwt;
  payload.iss = iss;
  const jwk = keys.find((k) => k.kid === header.kid);
  const input = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const key = createPrivateKey({ key: jwk, format: 'jwk' });
  const sig = header.alg.startsWith('ES')
    ? cryptoSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
    : cryptoSign('sha256', Buffer.from(input), key);
  return `${input}.${sig.toString('base64url')}`;
}

// Pre-middleware: PKCE method policy (and plain emulation), discovery fix-up.
async function pkceShim(ctx, next) {
  if (ctx.method === 'GET' && ctx.path === '/auth' && ctx.query.code_challenge !== undefined) {
    const q = { ...ctx.query };
    const method = q.code_challenge_method ?? (pkceMethods.includes('plain') ? 'plain' : undefined);
    if (method !== undefined && !pkceMethods.includes(method)) {
      q.code_challenge_method = `unsupported:${method}`;
    } else if (method === 'plain' && /^[\w.~-]{43,128}$/.test(q.code_challenge)) {
      q.code_challenge = b64sha256(q.code_challenge);
      q.code_challenge_method = 'S256';
    }
    ctx.query = q;
  }
  await next();
  if (ctx.path === '/.well-known/openid-configuration' && ctx.body && typeof ctx.body === 'object') {
    ctx.body.code_challenge_methods_supported = pkceMethods;
    if (config.client_auth_methods) ctx.body.token_endpoint_auth_methods_supported = config.client_auth_methods;
    if (ctx.get('x-test-tenant-template')) {
      // Entra ID's common/organizations metadata: the issuer is a template.
      ctx.body.issuer = `${issuer}/{tenantid}/v2.0`;
      ctx.body.authorization_response_iss_parameter_supported = false;
    }
  }
  if (ctx.path === '/token' && ctx.method === 'POST' && ctx.body && typeof ctx.body === 'object' && ctx.body.id_token) {
    ctx.body.id_token = resign(ctx.body.id_token);
  }
  // Entra ID sends no iss with its authorization responses.
  if (config.tenant_discovery && ctx.status === 303) {
    const loc = ctx.response.get('location');
    if (loc && loc.includes('iss=')) {
      const u = new URL(loc, issuer);
      u.searchParams.delete('iss');
      ctx.response.set('location', u.toString());
    }
  }
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

function loginPage(uid, clientId, error) {
  return `<!doctype html><html><head><title>Test IdP login</title></head><body>
<h1>Sign in to ${esc(clientId)}</h1>${error ? `<p class="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
<label>Account <input name="login" autofocus></label>
<button type="submit">Sign in</button></form>
<p>Accounts: ${Object.keys(accounts).map(esc).join(', ')}</p>
<form method="post" action="/interaction/${esc(uid)}/abort"><button type="submit">Cancel</button></form>
</body></html>`;
}

// Interaction routes: login form / login_hint shortcut / consent auto-grant / abort.
async function interactions(ctx, next) {
  const m = ctx.path.match(/^\/interaction\/([\w-]+)(\/login|\/abort)?$/);
  if (!m) return next();
  const provider = ctx.app;
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const finish = async (result) => {
    ctx.status = 303;
    ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true }));
  };
  const { prompt, params, uid } = details;
  if (m[2] === '/abort' && ctx.method === 'POST') {
    return finish({ error: 'access_denied', error_description: 'End-User aborted interaction' });
  }
  if (m[2] === '/login' && ctx.method === 'POST') {
    const login = new URLSearchParams(await readBody(ctx.req)).get('login') || '';
    if (!accounts[login]) {
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = loginPage(uid, params.client_id, `unknown account: ${login}`);
      return undefined;
    }
    return finish({ login: { accountId: login } });
  }
  if (m[2] || ctx.method !== 'GET') return next();
  if (prompt.name === 'login') {
    if (params.login_hint && accounts[params.login_hint]) {
      return finish({ login: { accountId: params.login_hint } });
    }
    ctx.type = 'html';
    ctx.body = loginPage(uid, params.client_id);
    return undefined;
  }
  // consent (e.g. prompt=consent): grant whatever is missing, no form.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  const d = prompt.details || {};
  if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
  if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return finish({ consent: { grantId: await grant.save() } });
}

function build(jwks) {
  const clients = (config.clients || []).map((c) => ({
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    ...c,
  }));
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: jwks },
    findAccount,
    loadExistingGrant,
    conformIdTokenClaims: !claimsInIdToken,
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: {
      // tid/oid (Entra ID), hd (Google Workspace), hasgroups (Entra overage); an account's
      // _claim_names/_claim_sources (distributed claims) go out with groups.
      openid: ['sub', 'groups', 'tid', 'oid', 'hd', 'hasgroups'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username', 'picture'],
      groups: ['groups'],
    },
    cookies: { keys: cookieKeys },
    // A loopback test peer: the gateway's JWKS URL (private_key_jwt) is on 127.0.0.1,
    // which oidc-provider's SSRF guard refuses; fetch without that guard.
    fetch: (url, { dispatcher: _guard, ...options }) => globalThis.fetch(url, options),
    pkce: { required: () => pkceRequired },
    ...(config.client_auth_methods ? { clientAuthMethods: config.client_auth_methods } : {}),
    interactions: { policy: policy(), url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: true },
      userinfo: { enabled: true },
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!doctype html><html><body><h1>oops</h1><pre>${esc(JSON.stringify(out))}</pre></body></html>`;
    },
  });
  provider.use(pkceShim);
  provider.use(interactions);
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  // Why a token request was refused (invalid_client hides its detail from the client).
  provider.on('grant.error', (_ctx, err) => console.error('grant.error', err.message, err.error_description || '', err.error_detail || ''));
  return provider;
}

async function control(req, res) {
  const send = (status, obj) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(obj));
  };
  const url = new URL(req.url, issuer);
  const acct = url.pathname.match(/^\/__test\/accounts\/([^/]+)$/);
  try {
    if (acct && req.method === 'POST') {
      const claims = JSON.parse(await readBody(req));
      if (!claims || typeof claims !== 'object' || Array.isArray(claims)) throw new Error('body must be a JSON object');
      accounts[decodeURIComponent(acct[1])] = claims;
      return send(200, { ok: true });
    }
    if (acct && req.method === 'DELETE') {
      delete accounts[decodeURIComponent(acct[1])];
      return send(200, { ok: true });
    }
    const redirect = url.pathname.match(/^\/__test\/clients\/([^/]+)\/redirect_uris$/);
    if (redirect && req.method === 'POST') {
      const { uri } = JSON.parse(await readBody(req));
      const client = (config.clients || []).find((c) => c.client_id === decodeURIComponent(redirect[1]));
      if (!client || typeof uri !== 'string') throw new Error('unknown client, or no uri');
      client.redirect_uris = [...new Set([...(client.redirect_uris || []), uri])];
      // Static clients are read when the provider is built: build it again (as rotate-keys does).
      current = build(keys);
      handler = current.callback();
      return send(200, { ok: true, redirect_uris: client.redirect_uris });
    }
    const jwksUri = url.pathname.match(/^\/__test\/clients\/([^/]+)\/jwks_uri$/);
    if (jwksUri && req.method === 'POST') {
      const { uri } = JSON.parse(await readBody(req));
      const client = (config.clients || []).find((c) => c.client_id === decodeURIComponent(jwksUri[1]));
      if (!client || typeof uri !== 'string') throw new Error('unknown client, or no uri');
      client.jwks_uri = uri;
      current = build(keys);
      handler = current.callback();
      return send(200, { ok: true });
    }
    if (url.pathname === '/__test/rotate-keys' && req.method === 'POST') {
      const body = await readBody(req);
      const keepOld = body ? JSON.parse(body).keep_old === true : false;
      const fresh = newKeys();
      keys = keepOld ? [...fresh, ...keys] : fresh;
      current = build(keys);
      handler = current.callback();
      return send(200, { ok: true, kids: keys.map((k) => k.kid) });
    }
    return send(404, { error: 'not found' });
  } catch (err) {
    return send(400, { error: String(err.message || err) });
  }
}

let issuer;
let keys = newKeys();
let current;
let handler;

// POST /__groups with a bearer access token: {"value": [...the account's all_groups]}, as
// Microsoft Graph's getMemberObjects answers (the groups endpoint of an overage).
async function groupsEndpoint(req, res) {
  const token = (req.headers.authorization || '').replace(/^Bearer /, '');
  const at = token ? await current.AccessToken.find(token) : undefined;
  if (!at) {
    res.writeHead(401, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ error: 'invalid_token' }));
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  return res.end(JSON.stringify({ value: (accounts[at.accountId] || {}).all_groups || [] }));
}

const server = createServer((req, res) => {
  if (req.url.startsWith('/__test/')) return control(req, res);
  if (req.url === '/__groups' && req.method === 'POST') return groupsEndpoint(req, res);
  // CONFIG.tenant_discovery: /SEGMENT/v2.0/.well-known/openid-configuration answers the
  // discovery document with Entra ID's multi-tenant issuer template.
  const tenantDoc = req.url.match(/^\/[\w.-]+\/v2\.0\/\.well-known\/openid-configuration$/);
  if (config.tenant_discovery && tenantDoc) {
    req.url = '/.well-known/openid-configuration';
    req.headers['x-test-tenant-template'] = '1';
  }
  return handler(req, res);
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  current = build(keys);
  handler = current.callback();
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

const stop = () => { server.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (!process.env.PEER_IGNORE_STDIN) {
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}
