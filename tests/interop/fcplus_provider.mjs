#!/usr/bin/env node
// A stand-in for FranceConnect+ built on oidc-provider (panva, OpenID Certified), independent of our
// code, that tests/interop/test_fcplus_oidc_provider.py drives our FranceConnect+ client against.
//
// Usage:   node fcplus_provider.mjs --issuer http://127.0.0.1:PORT/api/v2 --client-jwks-uri URL
//                                   --redirect-uri URL --post-logout-redirect-uri URL
// Output:  once listening, one JSON line on stdout: {"issuer", "clients": [{client_id, client_secret,
//          token_endpoint_auth_method, id_token_encrypted_response_alg}], "accounts": [...]}.
//          Errors of the provider are logged on stderr.
//
// Configured like the FranceConnect+ integration platform (see DOMAIN.md, « FranceConnect+ »):
// - the issuer has a path (…/api/v2); discovery, JWKS, authorize, token, userinfo and session/end under it;
// - authorization code flow, acr_values eidas1/eidas2/eidas3, `iss` in the authorization response (RFC 9207);
// - ID token and userinfo signed ES256 THEN encrypted (A256GCM) to the keys the client publishes at its
//   jwks_uri; the provider's JWKS also holds an RS256 key, which the client must ignore;
// - one scope per identity-pivot claim (scope name = claim name); acr and amr in the ID token, the pivot
//   claims only in userinfo; code 30 s, access token 60 s; RP-initiated logout with post_logout_redirect_uris.
//
// Clients (secrets drawn at start; they hold characters that RFC 6749 §2.3.1 form-encoding changes):
//   fcplus-rsa-oaep   client_secret_post,  RSA-OAEP
//   fcplus-ecdh-es    client_secret_post,  ECDH-ES
//   fcplus-basic      client_secret_basic, RSA-OAEP-256
//
// Interactions (no pages: the test plays the browser with plain HTTP and a cookie jar):
//   GET  {issuer}/interaction/:uid          JSON {uid, prompt: {name, reasons, details}, params}
//   POST {issuer}/interaction/:uid/login    form account=<accountId>&acr=eidas2&amr=pwd,mfa → resumes
//   POST {issuer}/interaction/:uid/consent  grants what the prompt asks for → resumes
//   POST {issuer}/interaction/:uid/abort    the person cancels → error=access_denied at the redirect_uri

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const PIVOT_CLAIMS = ['given_name', 'family_name', 'birthdate', 'gender', 'birthplace', 'birthcountry', 'email',
  'preferred_username'];
const ACR_VALUES = ['eidas1', 'eidas2', 'eidas3'];

// Test identities, shaped like the FranceConnect+ integration ones (sub: an opaque hex string).
const ACCOUNTS = {
  '7f3a1c5e9b2d4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2fv1': {
    given_name: 'Angela Claire Louise',
    family_name: 'DUBOIS',
    birthdate: '1962-08-24',
    gender: 'female',
    birthplace: '75107',
    birthcountry: '99100',
    email: 'angela.dubois@example.test',
    preferred_username: 'DUBOIS-MARTIN',
  },
  'c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00v1': {
    given_name: 'Jean-Noël Ærwan',
    family_name: "LÉVÊQUE D'ARGENT",
    birthdate: '1980-01-01',
    gender: 'male',
    birthplace: '',
    birthcountry: '99134',
    email: 'jn.leveque@example.test',
    preferred_username: '',
  },
};
const DEFAULT_ACCOUNT = Object.keys(ACCOUNTS)[0];

function fail(message) {
  process.stderr.write(`fcplus_provider: ${message}\n`);
  process.exit(2);
}

const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    'client-jwks-uri': { type: 'string' },
    'redirect-uri': { type: 'string' },
    'post-logout-redirect-uri': { type: 'string' },
  },
  strict: true,
});
for (const name of ['issuer', 'client-jwks-uri', 'redirect-uri', 'post-logout-redirect-uri']) {
  if (!args[name]) fail(`--${name} is required`);
}

const issuerUrl = new URL(args.issuer);
if (issuerUrl.protocol !== 'http:' || !issuerUrl.port) fail('--issuer must be http://HOST:PORT/path');
const mountPath = issuerUrl.pathname.replace(/\/$/, '');

function privateJwk(type, options, extra) {
  return { ...generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' }), ...extra };
}

// Provider signing keys: ES256 (what FranceConnect+ uses) and an RS256 key the client must not use.
const jwks = {
  keys: [
    privateJwk('ec', { namedCurve: 'P-256' }, { kid: 'fcplus-es256', use: 'sig', alg: 'ES256' }),
    privateJwk('rsa', { modulusLength: 2048 }, { kid: 'fcplus-rs256', use: 'sig', alg: 'RS256' }),
  ],
};

// RFC 6749 §2.3.1: these characters are form-encoded before HTTP Basic (and decoded by the provider).
const secret = () => `${randomBytes(24).toString('base64url')}+/:%~ &=`;

function fcplusClient(clientId, authMethod, keyManagement) {
  return {
    client_id: clientId,
    client_secret: secret(),
    token_endpoint_auth_method: authMethod,
    redirect_uris: [args['redirect-uri']],
    post_logout_redirect_uris: [args['post-logout-redirect-uri']],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    jwks_uri: args['client-jwks-uri'],
    id_token_signed_response_alg: 'ES256',
    id_token_encrypted_response_alg: keyManagement,
    id_token_encrypted_response_enc: 'A256GCM',
    userinfo_signed_response_alg: 'ES256',
    userinfo_encrypted_response_alg: keyManagement,
    userinfo_encrypted_response_enc: 'A256GCM',
  };
}

const clients = [
  fcplusClient('fcplus-rsa-oaep', 'client_secret_post', 'RSA-OAEP'),
  fcplusClient('fcplus-ecdh-es', 'client_secret_post', 'ECDH-ES'),
  fcplusClient('fcplus-basic', 'client_secret_basic', 'RSA-OAEP-256'),
];

const configuration = {
  clients: clients.map((c) => ({ ...c })),
  jwks,
  acrValues: ACR_VALUES,
  responseTypes: ['code'],
  claims: {
    acr: null,
    amr: null,
    auth_time: null,
    openid: ['sub'],
    ...Object.fromEntries(PIVOT_CLAIMS.map((claim) => [claim, [claim]])),
  },
  scopes: ['openid', ...PIVOT_CLAIMS],
  async findAccount(_ctx, id) {
    const account = ACCOUNTS[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
  features: {
    devInteractions: { enabled: false },
    encryption: { enabled: true },
    jwtUserinfo: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  interactions: { url: (_ctx, interaction) => `${mountPath}/interaction/${interaction.uid}` },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  ttl: { AuthorizationCode: 30, AccessToken: 60, IdToken: 60, Interaction: 600, Session: 1800, Grant: 1800 },
  // The client's jwks_uri is on the loopback interface, which the default fetch refuses (SSRF protection
  // against special-use addresses); this provider only ever runs locally for the tests.
  fetch: (url, { dispatcher, ...options }) => globalThis.fetch(url, options),
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(args.issuer, configuration);

for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error',
  'end_session.error', 'jwks.error', 'discovery.error', 'backchannel.error']) {
  provider.on(event, (...eventArgs) => {
    const err = eventArgs.find((a) => a instanceof Error);
    process.stderr.write(`fcplus_provider ${event}: ${err?.message} ${err?.error_description ?? ''}\n`);
  });
}

// --- interactions ----------------------------------------------------------------------------------------

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendJson(res, status, body) {
  const payload = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(payload);
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    sendJson(res, 400, { error: 'interaction uid does not match its cookie' });
    return;
  }
  const { prompt, params } = details;

  if (req.method === 'GET' && action === undefined) {
    sendJson(res, 200, { uid, prompt: { name: prompt.name, reasons: prompt.reasons, details: prompt.details },
      params });
    return;
  }
  if (req.method !== 'POST') {
    sendJson(res, 405, { error: 'method not allowed' });
    return;
  }
  const form = await readForm(req);

  if (action === 'login' && prompt.name === 'login') {
    const accountId = form.get('account') || DEFAULT_ACCOUNT;
    const acr = form.get('acr') || 'eidas2';
    if (!ACCOUNTS[accountId] || !ACR_VALUES.includes(acr)) {
      sendJson(res, 400, { error: 'unknown account or acr' });
      return;
    }
    const amr = (form.get('amr') || 'pwd,mfa').split(',');
    await provider.interactionFinished(req, res, { login: { accountId, acr, amr } },
      { mergeWithLastSubmission: false });
    return;
  }
  if (action === 'consent' && prompt.name === 'consent') {
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'the person cancelled',
    }, { mergeWithLastSubmission: false });
    return;
  }
  sendJson(res, 400, { error: `action ${action} does not answer the ${prompt.name} prompt` });
}

// --- server ----------------------------------------------------------------------------------------------

const providerCallback = provider.callback();
const interactionRoute = new RegExp(`^${mountPath}/interaction/([\\w-]+)(?:/(login|consent|abort))?/?(?:\\?.*)?$`);

const server = http.createServer((req, res) => {
  const match = interactionRoute.exec(req.url);
  if (match) {
    interaction(req, res, match[1], match[2]).catch((err) => {
      process.stderr.write(`fcplus_provider interaction: ${err.stack ?? err}\n`);
      if (!res.headersSent) sendJson(res, 500, { error: String(err.message ?? err) });
    });
    return;
  }
  if (mountPath && !(req.url === mountPath || req.url.startsWith(`${mountPath}/`)
    || req.url.startsWith(`${mountPath}?`))) {
    sendJson(res, 404, { error: 'not found' });
    return;
  }
  // Mounted under the issuer's path: oidc-provider derives the mount path from originalUrl vs url.
  req.originalUrl = req.url;
  req.url = req.url.slice(mountPath.length) || '/';
  providerCallback(req, res);
});

server.listen(Number(issuerUrl.port), issuerUrl.hostname, () => {
  process.stdout.write(`${JSON.stringify({
    issuer: provider.issuer,
    clients: clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      token_endpoint_auth_method: c.token_endpoint_auth_method,
      id_token_encrypted_response_alg: c.id_token_encrypted_response_alg,
    })),
    accounts: Object.keys(ACCOUNTS),
  })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
