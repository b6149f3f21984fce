#!/usr/bin/env node
// The peer of the side-by-side benchmark (benchmarks/side_by_side.py): a minimal host application around
// oidc-provider (panva, OpenID Certified) that does the work HospiConnect does for a sign-in, so that the same
// load generator can be pointed at both and the figures compared.
//
// Usage:   node server.mjs --port PORT --database-url postgresql://… --schema peer --accounts FILE
//                          --client-id ID --client-secret SECRET --redirect-uri URL [--reset]
// Output:  once listening, one JSON line on stdout: {"issuer", "pid"}. Provider errors go to stderr.
//
// What it does, like HospiConnect:
// - accounts in PostgreSQL (table <schema>.accounts), loaded from FILE (JSON: [{username, password_hash,
//   totp_seed, given_name, family_name}]) when --reset empties the schema;
// - a password page: argon2id verification of the stored PHC string (the parameters are the hash's own, so
//   HospiConnect's m=19 MiB, t=2, p=1), an unknown user costs a verification too;
// - then a TOTP page (RFC 6238: HMAC-SHA-1, 6 digits, 30 s, ±1 step), each time step accepted once per
//   account through one conditional UPDATE whose row count decides (a replay is refused);
// - consent granted without a page (HospiConnect's clients are the establishment's own applications);
// - authorization code flow with PKCE S256 required for every client, ES256 ID tokens signed with a P-256 key
//   drawn at start, refresh tokens rotated at every use (a reused one revokes the grant);
// - every artefact of the provider (sessions, interactions, codes, grants, tokens) stored in PostgreSQL through
//   the adapter below, in table <schema>.oidc_models: the same class of storage as HospiConnect.
//
// What it does not do (HospiConnect does): rate limiting of failed attempts, the hash-chained audit journal,
// the access policy evaluated at each authorization, CSRF tokens in its forms (the interaction cookie binds a
// form to its browser here). The benchmark's README states these differences.

import { createHmac, generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import { Algorithm, hash as argon2Hash, verify as argon2Verify } from '@node-rs/argon2';
import Provider from 'oidc-provider';
import pg from 'pg';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'database-url': { type: 'string' },
    schema: { type: 'string', default: 'peer' },
    accounts: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string' },
    'pool-size': { type: 'string', default: '10' },
    reset: { type: 'boolean', default: false },
  },
  strict: true,
});

function fail(message) {
  process.stderr.write(`peer: ${message}\n`);
  process.exit(2);
}

for (const name of ['port', 'database-url', 'client-id', 'client-secret', 'redirect-uri']) {
  if (!args[name]) fail(`--${name} is required`);
}
if (args.reset && !args.accounts) fail('--reset needs --accounts');
if (!/^[a-z_][a-z0-9_]*$/.test(args.schema)) fail('--schema must be a plain SQL identifier');

const SCHEMA = args.schema;
const ISSUER = `http://127.0.0.1:${args.port}`;
const pool = new pg.Pool({ connectionString: args['database-url'], max: Number(args['pool-size']) });

// --- storage -------------------------------------------------------------------------------------------------

async function resetSchema(accounts) {
  await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  await pool.query(`CREATE SCHEMA ${SCHEMA}`);
  await pool.query(`CREATE TABLE ${SCHEMA}.accounts (
    account_id text PRIMARY KEY, username text UNIQUE NOT NULL, password_hash text NOT NULL,
    totp_seed text NOT NULL, totp_last_step bigint, given_name text NOT NULL, family_name text NOT NULL)`);
  await pool.query(`CREATE TABLE ${SCHEMA}.oidc_models (
    id text NOT NULL, kind text NOT NULL, payload jsonb NOT NULL, grant_id text, user_code text, uid text,
    expires_at timestamptz, consumed_at timestamptz, PRIMARY KEY (kind, id))`);
  for (const column of ['grant_id', 'user_code', 'uid']) {
    await pool.query(`CREATE INDEX ON ${SCHEMA}.oidc_models (${column}) WHERE ${column} IS NOT NULL`);
  }
  await pool.query(
    `INSERT INTO ${SCHEMA}.accounts (account_id, username, password_hash, totp_seed, given_name, family_name)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])`,
    [accounts.map(() => randomBytes(16).toString('hex')), accounts.map((a) => a.username),
      accounts.map((a) => a.password_hash), accounts.map((a) => a.totp_seed), accounts.map((a) => a.given_name),
      accounts.map((a) => a.family_name)],
  );
}

// oidc-provider's adapter interface (one instance per model name), on one PostgreSQL table.
class PostgresAdapter {
  constructor(kind) {
    this.kind = kind;
  }

  async upsert(id, payload, expiresIn) {
    await pool.query(
      `INSERT INTO ${SCHEMA}.oidc_models (id, kind, payload, grant_id, user_code, uid, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::int IS NULL THEN NULL
                                            ELSE now() + make_interval(secs => $7::int) END)
       ON CONFLICT (kind, id) DO UPDATE SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id,
         user_code = EXCLUDED.user_code, uid = EXCLUDED.uid, expires_at = EXCLUDED.expires_at`,
      [id, this.kind, payload, payload.grantId ?? null, payload.userCode ?? null, payload.uid ?? null,
        expiresIn ?? null],
    );
  }

  async #findBy(column, value) {
    const { rows } = await pool.query(
      `SELECT payload, consumed_at FROM ${SCHEMA}.oidc_models
       WHERE kind = $1 AND ${column} = $2 AND (expires_at IS NULL OR expires_at > now())`,
      [this.kind, value],
    );
    if (!rows.length) return undefined;
    const [{ payload, consumed_at: consumedAt }] = rows;
    return consumedAt ? { ...payload, consumed: Math.floor(consumedAt.getTime() / 1000) } : payload;
  }

  find(id) { return this.#findBy('id', id); }

  findByUserCode(userCode) { return this.#findBy('user_code', userCode); }

  findByUid(uid) { return this.#findBy('uid', uid); }

  async consume(id) {
    await pool.query(`UPDATE ${SCHEMA}.oidc_models SET consumed_at = now() WHERE kind = $1 AND id = $2`,
      [this.kind, id]);
  }

  async destroy(id) {
    await pool.query(`DELETE FROM ${SCHEMA}.oidc_models WHERE kind = $1 AND id = $2`, [this.kind, id]);
  }

  async revokeByGrantId(grantId) {
    await pool.query(`DELETE FROM ${SCHEMA}.oidc_models WHERE grant_id = $1`, [grantId]);
  }
}

// --- authenticators ------------------------------------------------------------------------------------------

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32Decode(text) {
  let bits = 0;
  let value = 0;
  const out = [];
  for (const char of text.replace(/=+$/, '').toUpperCase()) {
    const index = BASE32.indexOf(char);
    if (index < 0) throw new Error('invalid base32 seed');
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

// RFC 4226 §5.3 (HOTP) at an RFC 6238 time step: HMAC-SHA-1, dynamic truncation, 6 digits.
function totpCode(key, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

const TOTP_PERIOD = 30;
const TOTP_ACCEPT_STEPS = 1;

// Returns true when `code` matches a step within ±1 of now that is later than the last one accepted for the
// account, and records that step in the same statement (two concurrent uses of one code: one wins).
async function checkTotp(accountId, seed, code) {
  if (!/^[0-9]{6}$/.test(code)) return false;
  const key = base32Decode(seed);
  const now = Math.floor(Date.now() / 1000 / TOTP_PERIOD);
  for (let step = now - TOTP_ACCEPT_STEPS; step <= now + TOTP_ACCEPT_STEPS; step += 1) {
    if (timingSafeEqual(Buffer.from(totpCode(key, step)), Buffer.from(code))) {
      const { rowCount } = await pool.query(
        `UPDATE ${SCHEMA}.accounts SET totp_last_step = $2
         WHERE account_id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)`,
        [accountId, step],
      );
      return rowCount === 1;
    }
  }
  return false;
}

// HospiConnect's parameters (hospiconnect/authenticators/password.py). They serve only the dummy hash below:
// a stored hash is verified with the parameters written in it.
const ARGON2_PARAMETERS = { algorithm: Algorithm.Argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 };

// A verification is spent on unknown users too, so that the time taken does not reveal who has an account.
const DUMMY_HASH = await argon2Hash('peer: no such account', ARGON2_PARAMETERS);

async function checkPassword(username, password) {
  const { rows } = await pool.query(
    `SELECT account_id, password_hash FROM ${SCHEMA}.accounts WHERE username = $1`, [username]);
  const prepared = password.normalize('NFC');
  if (!rows.length) {
    await argon2Verify(DUMMY_HASH, prepared).catch(() => false);
    return undefined;
  }
  return (await argon2Verify(rows[0].password_hash, prepared)) ? rows[0].account_id : undefined;
}

// --- provider ------------------------------------------------------------------------------------------------

const signingKey = {
  ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }),
  kid: `peer-${randomBytes(6).toString('hex')}`,
  use: 'sig',
  alg: 'ES256',
};

const SCOPES = 'openid profile offline_access';

const provider = new Provider(ISSUER, {
  adapter: PostgresAdapter,
  clients: [{
    client_id: args['client-id'],
    client_secret: args['client-secret'],
    token_endpoint_auth_method: 'client_secret_basic',
    redirect_uris: [args['redirect-uri']],
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  // acr, amr and auth_time in every ID token, and the profile claims too (conformIdTokenClaims: false), as in
  // HospiConnect's: the ID token carries the same kind of content.
  claims: { openid: ['sub', 'acr', 'amr', 'auth_time'], profile: ['given_name', 'family_name', 'preferred_username'] },
  conformIdTokenClaims: false,
  acrValues: ['mfa'],
  scopes: SCOPES.split(' '),
  responseTypes: ['code'],
  pkce: { required: () => true },
  // HospiConnect issues a refresh token for offline_access without prompt=consent (its clients are the
  // establishment's own applications), and keeps it past the sign-in session; oidc-provider's defaults drop
  // offline_access without prompt=consent and tie other refresh tokens to the session. Same behaviour here.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  rotateRefreshToken: true,
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, accountId) {
    const { rows } = await pool.query(
      `SELECT username, given_name, family_name FROM ${SCHEMA}.accounts WHERE account_id = $1`, [accountId]);
    if (!rows.length) return undefined;
    const [row] = rows;
    return {
      accountId,
      async claims() {
        return { sub: accountId, given_name: row.given_name, family_name: row.family_name,
          preferred_username: row.username };
      },
    };
  },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
});

for (const event of ['server_error', 'authorization.error', 'grant.error', 'interaction.error']) {
  provider.on(event, (...eventArgs) => {
    const err = eventArgs.find((a) => a instanceof Error);
    process.stderr.write(`peer ${event}: ${err?.message} ${err?.error_description ?? ''}\n`);
  });
}

// --- interaction pages ---------------------------------------------------------------------------------------

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function page(res, status, title, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>${title}</title></head>`
    + `<body><h1>${title}</h1>${body}</body></html>`);
}

function passwordPage(res, uid, error = '') {
  page(res, error ? 400 : 200, 'Connexion', `${error ? `<p role="alert">${error}</p>` : ''}
    <form method="post" action="/interaction/${uid}/password">
      <label>Identifiant <input name="username" autocomplete="username" required></label>
      <label>Mot de passe <input type="password" name="password" autocomplete="current-password" required></label>
      <button>Continuer</button></form>`);
}

function totpPage(res, uid, error = '') {
  page(res, error ? 400 : 200, 'Code de vérification', `${error ? `<p role="alert">${error}</p>` : ''}
    <form method="post" action="/interaction/${uid}/totp">
      <label>Code à 6 chiffres <input name="code" inputmode="numeric" autocomplete="one-time-code" required></label>
      <button>Valider</button></form>`);
}

function seeOther(res, location) {
  res.writeHead(303, { location, 'content-length': '0' });
  res.end();
}

async function interaction(req, res, uid, step) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid || details.prompt.name !== 'login') {
    page(res, 400, 'Demande invalide', '<p>Cette étape ne correspond pas à la demande en cours.</p>');
    return;
  }
  const pending = details.result?.passwordVerified;
  if (req.method === 'GET') {
    if (step === undefined) passwordPage(res, uid);
    else if (step === 'totp' && pending) totpPage(res, uid);
    else seeOther(res, `/interaction/${uid}`);
    return;
  }
  const form = await readForm(req);
  if (step === 'password') {
    const accountId = await checkPassword(form.get('username') ?? '', form.get('password') ?? '');
    if (!accountId) {
      passwordPage(res, uid, 'Identifiant ou mot de passe incorrect.');
      return;
    }
    // The first factor is remembered in the interaction (stored server-side), not yet in a session.
    details.result = { passwordVerified: accountId };
    await details.persist();
    seeOther(res, `/interaction/${uid}/totp`);
    return;
  }
  if (step === 'totp' && pending) {
    const { rows } = await pool.query(`SELECT totp_seed FROM ${SCHEMA}.accounts WHERE account_id = $1`,
      [pending]);
    if (!rows.length || !(await checkTotp(pending, rows[0].totp_seed, form.get('code') ?? ''))) {
      totpPage(res, uid, 'Code incorrect ou déjà utilisé.');
      return;
    }
    // Consent is granted here: the request's scopes become the grant, so no consent prompt follows.
    const grant = new provider.Grant({ accountId: pending, clientId: details.params.client_id });
    grant.addOIDCScope(String(details.params.scope ?? 'openid'));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, {
      login: { accountId: pending, amr: ['pwd', 'otp'], acr: 'mfa' },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
    return;
  }
  seeOther(res, `/interaction/${uid}`);
}

const INTERACTION_RE = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(password|totp))?$/;
const callback = provider.callback();

const server = http.createServer((req, res) => {
  const match = INTERACTION_RE.exec(req.url.split('?')[0]);
  if (!match) {
    callback(req, res);
    return;
  }
  interaction(req, res, match[1], match[2]).catch((err) => {
    process.stderr.write(`peer interaction: ${err.stack}\n`);
    if (!res.headersSent) page(res, 500, 'Erreur', '<p>Erreur interne.</p>');
  });
});
server.keepAliveTimeout = 65_000;

if (args.reset) await resetSchema(JSON.parse(readFileSync(args.accounts, 'utf8')));

server.listen(Number(args.port), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ issuer: ISSUER, pid: process.pid })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    pool.end().finally(() => process.exit(0));
  });
}
