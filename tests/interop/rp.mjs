#!/usr/bin/env node
// An independent OpenID Connect relying party, built on openid-client (panva), that the Python interop
// tests drive one step at a time against a running HospiConnect.
//
// Usage:   node rp.mjs <command> '<input JSON>'
// Output:  exactly one JSON document on stdout: {"ok": true, ...} on success (exit status 0), or
//          {"ok": false, "error": {...}} (exit status 2) when the library or the provider refused something.
//
// The script keeps no state between calls: the Python test holds the PKCE verifier, state, nonce and tokens
// and hands back what each step needs, exactly as a web application would keep them in its session.
// Every call starts with discovery, so the provider's metadata (issuer, endpoints, algorithms) is checked
// by the library each time, and ID tokens are verified against the provider's JWKS.
//
// Commands:
//   keygen                  a P-256 key pair for private_key_jwt: {private_jwk, public_jwk} (same kid)
//   discover                the provider metadata as the library accepted it
//   authorization-url       {url, code_verifier, state, nonce} (PKCE S256, state, nonce; extra params allowed)
//   callback                authorization code grant from the callback URL; tokens and verified ID token claims
//   userinfo                the UserInfo response (its sub must equal expected_sub)
//   refresh                 refresh token grant; new tokens and verified ID token claims
//   introspect              token introspection (RFC 7662) with the client's authentication
//   end-session-url         the RP-initiated logout URL

import { webcrypto } from 'node:crypto';
import * as client from 'openid-client';

const { subtle } = webcrypto;

/** Base64url without padding (RFC 7515 §2). */
function b64url(bytes) {
  return Buffer.from(bytes).toString('base64url');
}

/** RFC 7638 thumbprint of a P-256 public JWK: the kid both sides agree on. */
async function ecThumbprint(jwk) {
  // Members in lexicographic order, no whitespace (RFC 7638 §3.2).
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return b64url(await subtle.digest('SHA-256', new TextEncoder().encode(canonical)));
}

/** Generate the client's signing key for private_key_jwt (RFC 7523 §2.2). */
async function keygen() {
  const pair = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const privateJwk = await subtle.exportKey('jwk', pair.privateKey);
  const publicJwk = await subtle.exportKey('jwk', pair.publicKey);
  const kid = await ecThumbprint(publicJwk);
  const pub = { kty: publicJwk.kty, crv: publicJwk.crv, x: publicJwk.x, y: publicJwk.y, kid, alg: 'ES256', use: 'sig' };
  const priv = { kty: privateJwk.kty, crv: privateJwk.crv, x: privateJwk.x, y: privateJwk.y, d: privateJwk.d, kid };
  return { private_jwk: priv, public_jwk: pub };
}

/** The client authentication method the provider registered for this client. */
async function clientAuthentication(input) {
  switch (input.auth) {
    case 'client_secret_basic':
      return client.ClientSecretBasic(input.client_secret);
    case 'client_secret_post':
      return client.ClientSecretPost(input.client_secret);
    case 'private_key_jwt': {
      const { kid, ...material } = input.private_jwk;
      const key = await subtle.importKey(
        'jwk',
        { kty: material.kty, crv: material.crv, x: material.x, y: material.y, d: material.d },
        { name: 'ECDSA', namedCurve: 'P-256' },
        false,
        ['sign'],
      );
      return client.PrivateKeyJwt({ key, kid });
    }
    case 'none':
      return client.None();
    default:
      throw new TypeError(`unknown client authentication method ${input.auth}`);
  }
}

/**
 * Discovery (OpenID Connect Discovery 1.0 §4) with the issuer URL; the library checks that the document's
 * issuer is exactly that URL. Plain http is allowed because the provider runs on loopback in the tests
 * only. ID token signatures are verified against the JWKS (enableNonRepudiationChecks).
 */
async function configure(input) {
  const metadata = { redirect_uris: input.redirect_uri ? [input.redirect_uri] : undefined };
  if (input.id_token_signed_response_alg) {
    metadata.id_token_signed_response_alg = input.id_token_signed_response_alg;
  }
  const config = await client.discovery(
    new URL(input.issuer),
    input.client_id,
    metadata,
    await clientAuthentication(input),
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks], timeout: 10 },
  );
  return config;
}

/** The decoded protected header of a compact JWS (for the test's assertions about alg and kid). */
function jwsHeader(token) {
  return JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString('utf8'));
}

/** What a token response gave, with the ID token claims as the library validated them. */
function describeTokens(tokens) {
  const claims = tokens.id_token ? tokens.claims() : undefined;
  return {
    access_token: tokens.access_token,
    token_type: tokens.token_type,
    expires_in: tokens.expiresIn(),
    scope: tokens.scope,
    refresh_token: tokens.refresh_token,
    id_token: tokens.id_token,
    id_token_header: tokens.id_token ? jwsHeader(tokens.id_token) : undefined,
    claims,
  };
}

const commands = {
  async keygen() {
    return keygen();
  },

  async discover(input) {
    const config = await configure(input);
    return { server: config.serverMetadata() };
  },

  async 'authorization-url'(input) {
    const config = await configure(input);
    const codeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const parameters = {
      redirect_uri: input.redirect_uri,
      scope: input.scope ?? 'openid',
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      ...(input.extra ?? {}),
    };
    const url = client.buildAuthorizationUrl(config, parameters);
    return { url: url.href, code_verifier: codeVerifier, state, nonce };
  },

  async callback(input) {
    const config = await configure(input);
    const checks = {
      pkceCodeVerifier: input.code_verifier,
      expectedState: input.state,
      expectedNonce: input.nonce,
      idTokenExpected: true,
    };
    if (input.max_age !== undefined) {
      checks.maxAge = input.max_age;
    }
    const tokens = await client.authorizationCodeGrant(config, new URL(input.callback_url), checks);
    return describeTokens(tokens);
  },

  async userinfo(input) {
    const config = await configure(input);
    const info = await client.fetchUserInfo(config, input.access_token, input.expected_sub);
    return { userinfo: info };
  },

  async refresh(input) {
    const config = await configure(input);
    const tokens = await client.refreshTokenGrant(config, input.refresh_token, input.scope ? { scope: input.scope } : undefined);
    return describeTokens(tokens);
  },

  async introspect(input) {
    const config = await configure(input);
    const result = await client.tokenIntrospection(config, input.token);
    return { introspection: result };
  },

  async 'end-session-url'(input) {
    const config = await configure(input);
    const parameters = { id_token_hint: input.id_token_hint };
    if (input.post_logout_redirect_uri) parameters.post_logout_redirect_uri = input.post_logout_redirect_uri;
    if (input.state) parameters.state = input.state;
    return { url: client.buildEndSessionUrl(config, parameters).href };
  },
};

/** Everything an error carries that helps a test tell what was refused and by whom. */
function describeError(err) {
  const out = {
    name: err?.name,
    message: err?.message,
    code: err?.code,
  };
  // ResponseBodyError (token endpoint), AuthorizationResponseError (callback), WWWAuthenticateChallengeError.
  for (const field of ['error', 'error_description', 'status']) {
    if (err && err[field] !== undefined) out[field] = err[field];
  }
  if (err?.cause !== undefined) {
    const cause = err.cause;
    if (cause instanceof Error) {
      out.cause = { name: cause.name, message: cause.message, code: cause.code };
    } else if (cause && typeof cause === 'object') {
      try {
        out.cause = JSON.parse(JSON.stringify(cause));
      } catch {
        out.cause = String(cause);
      }
    } else {
      out.cause = cause;
    }
  }
  if (err instanceof client.WWWAuthenticateChallengeError || err?.name === 'WWWAuthenticateChallengeError') {
    const challenge = err.cause?.[0];
    if (challenge?.parameters?.error) out.error = challenge.parameters.error;
  }
  return out;
}

async function main() {
  const [command, raw] = process.argv.slice(2);
  const handler = commands[command];
  if (!handler) {
    process.stdout.write(JSON.stringify({ ok: false, error: { name: 'UsageError', message: `unknown command ${command}` } }));
    process.exitCode = 64;
    return;
  }
  try {
    const input = raw ? JSON.parse(raw) : {};
    const result = await handler(input);
    process.stdout.write(JSON.stringify({ ok: true, ...result }));
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, error: describeError(err) }));
    process.exitCode = 2;
  }
}

await main();
