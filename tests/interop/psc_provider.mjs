#!/usr/bin/env node
// A stand-in for Pro Santé Connect built on oidc-provider (panva, OpenID Certified), independent of our
// code, that tests/interop/test_psc_oidc_provider.py drives our PSC client (hospiconnect/enrollment/psc.py)
// against.
//
// Usage:   node psc_provider.mjs --issuer http://127.0.0.1:PORT/auth/realms/esante-wallet
//                                --redirect-uri URL --post-logout-redirect-uri URL
// Output:  once listening, one JSON line on stdout: {"issuer", "clients": [{client_id, client_secret,
//          token_endpoint_auth_method, userinfo_signed_response_alg}], "accounts": [...]}.
//
// Configured like the PSC sandbox (see DOMAIN.md, « Pro Santé Connect »): issuer with a path; authorization code
// flow; scope `openid scope_all`, scope_all releasing SubjectNameID ("8" + RPPS), SubjectRefPro,
// SubjectOrganization, given_name, family_name, preferred_username; acr_values eidas1/eidas2/eidas3; ID token
// signed RS256, not encrypted (the JWKS also holds an ES256 key); userinfo in JSON, or a signed JWT for the
// client registered so; `iss` in the authorization response (RFC 9207); RP-initiated logout.
//
// Clients (secrets drawn at start, with characters that RFC 6749 §2.3.1 form-encoding changes):
//   psc-basic        client_secret_basic, userinfo JSON
//   psc-jwt-userinfo client_secret_post,  userinfo signed (RS256)
//
// Interactions (no pages: the test plays the browser with plain HTTP and a cookie jar):
//   GET  {issuer}/interaction/:uid          JSON {uid, prompt: {name, reasons, details}, params}
//   POST {issuer}/interaction/:uid/login    form account=<accountId>&acr=eidas1&amr=hwk,pin,mfa → resumes
//   POST {issuer}/interaction/:uid/consent  grants what the prompt asks for → resumes
//   POST {issuer}/interaction/:uid/abort    the person cancels → error=access_denied at the redirect_uri

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const PSC_CLAIMS = ['SubjectNameID', 'SubjectRefPro', 'SubjectOrganization', 'SubjectRole', 'given_name',
  'family_name', 'preferred_username', 'otherIds'];
const ACR_VALUES = ['eidas1', 'eidas2', 'eidas3'];

// Test professionals, shaped like the PSC sandbox ones (sub: opaque; SubjectNameID: "8" + RPPS or ADELI form).
const ACCOUNTS = {
  'f:0b9e1e5a-psc-test:810999900011': {
    SubjectNameID: '810999900011',
    preferred_username: '810999900011',
    given_name: 'Hélène',
    family_name: 'VASSEUR-NGUYEN',
    SubjectOrganization: 'Centre hospitalier de test',
    SubjectRefPro: { codeCivilite: 'MME', exercices: [{ codeProfession: '10', activities: [
      { numeroFinessSite: '990000103', raisonSocialeSite: 'Centre hospitalier de test' }] }] },
    SubjectRole: ['10^1.2.250.1.213.1.1.5.5'],
    otherIds: [],
  },
  'f:77aa01c3-psc-test:0751234567': {
    SubjectNameID: '0751234567',
    preferred_username: '0751234567',
    given_name: 'Jean-Noël',
    family_name: "LÉVÊQUE D'ARGENT",
    SubjectOrganization: 'Cabinet libéral de test',
    SubjectRefPro: { codeCivilite: 'M', exercices: [] },
    SubjectRole: [],
    otherIds: [],
  },
};
const DEFAULT_ACCOUNT = Object.keys(ACCOUNTS)[0];

function fail(message) {
  process.stderr.write(`psc_provider: ${message}\n`);
  process.exit(2);
}

const { values: args } = parseArgs({
  options: {
    issuer: { type: 'string' },
    'redirect-uri': { type: 'string' },
    'post-logout-redirect-uri': { type: 'string' },
  },
  strict: true,
});
for (const name of ['issuer', 'redirect-uri', 'post-logout-redirect-uri']) {
  if (!args[name]) fail(`--${name} is required`);
}

const issuerUrl = new URL(args.issuer);
if (issuerUrl.protocol !== 'http:' || !issuerUrl.port) fail('--issuer must be http://HOST:PORT/path');
const mountPath = issuerUrl.pathname.replace(/\/$/, '');

function privateJwk(type, options, extra) {
  return { ...generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' }), ...extra };
}

// Provider signing keys: RS256 (what the PSC sandbox uses) and an ES256 key.
const jwks = {
  keys: [
    privateJwk('rsa', { modulusLength: 2048 }, { kid: 'psc-rs256', use: 'sig', alg: 'RS256' }),
    privateJwk('ec', { namedCurve: 'P-256' }, { kid: 'psc-es256', use: 'sig', alg: 'ES256' }),
  ],
};

// RFC 6749 §2.3.1: these characters are form-encoded before HTTP Basic (and decoded by the provider).
const secret = () => `${randomBytes(24).toString('base64url')}+/:%~ &=`;

function pscClient(clientId, authMethod, userinfoAlg) {
  return {
    client_id: clientId,
    client_secret: secret(),
    token_endpoint_auth_method: authMethod,
    redirect_uris: [args['redirect-uri']],
    post_logout_redirect_uris: [args['post-logout-redirect-uri']],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    id_token_signed_response_alg: 'RS256',
    ...(userinfoAlg ? { userinfo_signed_response_alg: userinfoAlg } : {}),
  };
}

const clients = [
  pscClient('psc-basic', 'client_secret_basic', null),
  pscClient('psc-jwt-userinfo', 'client_secret_post', 'RS256'),
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
    // PSC sends amr and auth_time without being asked (amr tells the means: CPS card or e-CPS app);
    // oidc-provider releases them only when a requested scope maps to them.
    openid: ['sub', 'amr', 'auth_time'],
    scope_all: PSC_CLAIMS,
  },
  scopes: ['openid', 'scope_all'],
  async findAccount(_ctx, id) {
    const account = ACCOUNTS[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
  features: {
    devInteractions: { enabled: false },
    jwtUserinfo: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  interactions: { url: (_ctx, interaction) => `${mountPath}/interaction/${interaction.uid}` },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  ttl: { AuthorizationCode: 60, AccessToken: 120, IdToken: 300, Interaction: 600, Session: 1800, Grant: 1800 },
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
    process.stderr.write(`psc_provider ${event}: ${err?.message} ${err?.error_description ?? ''}\n`);
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
    const acr = form.get('acr') || 'eidas1';
    if (!ACCOUNTS[accountId] || !ACR_VALUES.includes(acr)) {
      sendJson(res, 400, { error: 'unknown account or acr' });
      return;
    }
    const amr = (form.get('amr') || 'pwd,otp,mfa').split(',');
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
      process.stderr.write(`psc_provider interaction: ${err.stack ?? err}\n`);
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
      userinfo_signed_response_alg: c.userinfo_signed_response_alg ?? null,
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
