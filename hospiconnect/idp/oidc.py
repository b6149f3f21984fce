"""The authorization endpoint (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2) and ID tokens (Core §2).

Authlib's authorization-endpoint machinery is not used for this endpoint: it would redirect some errors
that must end on a page (RFC 6749 §4.1.2.1), knows no interaction that resumes with its own facts, and
leaves ``max_age``, ``acr_values`` and ``iss`` to the application. What is done here instead:

1. **Client and redirect URI** — an unknown, disabled or absent client, an absent, repeated or
   unregistered ``redirect_uri`` (exact string comparison, SECURITY.md item 1): a French error page
   (400), never a redirect, so the endpoint is no open redirector.
2. **Parameters** — anything else wrong is answered at the redirect URI with an OAuth error:
   ``response_type`` other than ``code`` (``unsupported_response_type``, item 5), PKCE missing or not
   ``S256`` (``invalid_request``, item 2), no ``openid`` scope (``invalid_scope``), bad ``prompt``,
   ``max_age``, ``claims`` or ``id_token_hint``, request objects (``request_not_supported``). Unknown
   parameters are ignored (Core §3.1.2.1). GET and POST are both accepted (Core §3.1.2.1).
3. **Checks** (hospiconnect.idp.checks) against the SSO session, and the **access policy** for the
   client's class (hospiconnect.idp.policy_gate, journaled ``authz:policy:decided``); then a code, an
   interaction, or — with ``prompt=none`` — ``login_required``/``interaction_required``. For Pro Santé Connect
   (client profile ``psc``) the delegation rule (hospiconnect.idp.psc_delegation) runs too. A policy denial is
   ``access_denied``; after an interaction, the person reads why on a French page that leads back to the
   client with that error.

Every redirect to the client carries ``iss`` (RFC 9207 §2, item 4), errors included, and ``state`` when
the client sent one. Every outcome is journaled.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import re
from typing import Any, Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity
from hospiconnect.idp import checks, clients, interactions, login_session, policy_gate, psc_delegation, tokens
from hospiconnect.idp import claims as claims_mod
from hospiconnect.idp import keys as keys_mod
from hospiconnect.idp.models import Client, Interaction, SsoSession
from hospiconnect.policies import Policy
from hospiconnect.settings import Settings

S256_CHALLENGE_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
#: Parameters that must not be repeated (RFC 6749 §3.1): the first two decide between page and redirect.
SINGLE_VALUED = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "prompt", "max_age",
                 "code_challenge", "code_challenge_method", "login_hint", "id_token_hint", "claims",
                 "acr_values", "ui_locales", "response_mode")
MAX_LENGTHS = {"state": 2000, "nonce": 500, "login_hint": 254, "id_token_hint": 16000, "ui_locales": 100,
               "acr_values": 200, "scope": 500, "claims": claims_mod.MAX_CLAIMS_PARAMETER}
ID_TOKEN_ALGS = ("ES256", "RS256")
DENIED_MESSAGE = ("La politique d'accès de l'établissement ne vous permet pas d'accéder à cette application "
                  "de cette façon.")



class AuthorizeError(Exception):
    """Base of the refusals of the authorization endpoint."""


class PageError(AuthorizeError):
    """A refusal shown to the person on a French page (no redirect): no trustworthy redirect URI."""

    def __init__(self, message: str, reason: str, client_id: str | None = None) -> None:
        super().__init__(message)
        self.message, self.reason, self.client_id = message, reason, client_id


class RedirectError(AuthorizeError):
    """An OAuth error sent to the client's validated redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: str, description: str, *, redirect_uri: str, state: str | None,
                 client_id: str, reason: str | None = None) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.redirect_uri, self.state, self.client_id = error, redirect_uri, state, client_id
        # RFC 6749 §4.1.2.1: ASCII without '"' and '\'; never CR/LF.
        self.description = re.sub(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]", " ", description)[:300]
        self.reason = reason or error


class PolicyDenied(RedirectError):
    """The access policy denies the authorization: ``access_denied``, and ``messages`` (French) for a page."""

    def __init__(self, error: RedirectError, messages: tuple[str, ...]) -> None:
        super().__init__(error.error, error.description, redirect_uri=error.redirect_uri, state=error.state,
                         client_id=error.client_id, reason=error.reason)
        self.messages = messages


@dataclasses.dataclass(frozen=True)
class AuthorizationRequest:
    """A validated authorization request; ``to_params``/``from_params`` store it with an interaction."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    code_challenge: str
    state: str | None = None
    nonce: str | None = None
    prompt: frozenset[str] = frozenset()
    max_age: int | None = None
    login_hint: str | None = None
    #: ``sub`` of a verified ``id_token_hint`` (the token itself is not kept).
    hint_sub: str | None = None
    id_token_hint: bool = False
    ui_locales: str | None = None
    acr_values: tuple[str, ...] = ()
    claims: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_params(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["scope"] = list(self.scope)
        data["prompt"] = sorted(self.prompt)
        data["acr_values"] = list(self.acr_values)
        return data

    @classmethod
    def from_params(cls, data: Mapping[str, Any]) -> "AuthorizationRequest":
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["scope"] = tuple(values.get("scope") or ())
        values["prompt"] = frozenset(values.get("prompt") or ())
        values["acr_values"] = tuple(values.get("acr_values") or ())
        values["claims"] = dict(values.get("claims") or {})
        return cls(**values)

    @property
    def scope_string(self) -> str:
        return " ".join(self.scope)

    def request_facts(self, hint_identity_id: int | None) -> checks.RequestFacts:
        return checks.RequestFacts(prompt=self.prompt, max_age=self.max_age, acr_values=self.acr_values,
                                   essential_acr=claims_mod.essential_acr_values(self.claims),
                                   id_token_hint=self.id_token_hint, hint_identity_id=hint_identity_id)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the view sends back: a redirect (``location``) or a French page (``message``, with ``details``
    and, for a policy denial, ``back``: the error redirect to the client, offered as a link)."""

    status: int
    location: str | None = None
    message: str | None = None
    details: tuple[str, ...] = ()
    back: str | None = None


# --- helpers --------------------------------------------------------------------------------------------

def add_query(uri: str, params: Mapping[str, str | None]) -> str:
    """Return ``uri`` with ``params`` appended to its query, keeping the query it already has
    (RFC 6749 §3.1.2); None values are left out."""
    parts = urlsplit(uri)
    extra = urlencode([(k, v) for k, v in params.items() if v is not None])
    query = f"{parts.query}&{extra}" if parts.query and extra else (parts.query or extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def error_location(settings: Settings, error: RedirectError) -> str:
    """Return the redirect URI carrying ``error`` (with ``iss``, RFC 9207 §2, and ``state``)."""
    return add_query(error.redirect_uri, {"error": error.error, "error_description": error.description,
                                          "state": error.state, "iss": settings.issuer})


def _single(params: Mapping[str, Any], name: str) -> str | None:
    getlist = getattr(params, "getlist", None)
    values = getlist(name) if getlist else ([params[name]] if name in params else [])
    values = [v for v in values if isinstance(v, str)]
    if len(values) > 1:
        raise ValueError(name)
    return values[0] if values and values[0] != "" else None


def usable_client(session: Session, client_id: str | None) -> Client | None:
    """Return the enabled client ``client_id``, or None."""
    client = clients.get_client(session, client_id) if client_id else None
    return client if client is not None and client.disabled_at is None else None


def id_token_alg(session: Session, client: Client) -> str:
    """Return the algorithm of the client's ID tokens: its registered preference (OpenID Connect Dynamic
    Client Registration §2, ``id_token_signed_response_alg``), else ES256."""
    alg = client.id_token_signed_response_alg
    return alg if alg in ID_TOKEN_ALGS else "ES256"


def set_id_token_alg(session: Session, client_id: str, alg: str | None) -> None:
    """Record the client's preferred ID token algorithm (``ES256``, ``RS256``, or None for the default).

    Raises :class:`ValueError` for another algorithm."""
    if alg is not None and alg not in ID_TOKEN_ALGS:
        raise ValueError(f"unsupported id_token_signed_response_alg {alg!r}")
    session.execute(update(Client).where(Client.client_id == client_id).values(id_token_signed_response_alg=alg)
                    .execution_options(synchronize_session="fetch"))


def _journal_refusal(session: Session, *, client_id: str | None, reason: str, error: str | None,
                     client_ip: str | None, identity: str | None = None) -> None:
    audit.record(session, tags.OIDC_AUTHORIZE_REFUSED, actor=f"client:{(client_id or '?')[:100]}",
                 subject=identity, client_ip=client_ip, outcome="refused",
                 details={"client_id": (client_id or "")[:100], "reason": reason, "error": error})


# --- validation -----------------------------------------------------------------------------------------

def validate(session: Session, settings: Settings, params: Mapping[str, Any]) -> tuple[Client, AuthorizationRequest]:
    """Validate an authorization request (RFC 6749 §4.1.1, Core §3.1.2.1-2, RFC 7636 §4.3).

    Returns the client and the request. Raises :class:`PageError` when the client or the redirect URI
    cannot be trusted, :class:`RedirectError` for every other problem.
    """
    try:
        client_id = _single(params, "client_id")
        redirect_uri = _single(params, "redirect_uri")
    except ValueError as exc:
        raise PageError("La demande de connexion est mal formée (paramètre répété). Retournez à l'application "
                        "et recommencez.", f"repeated_{exc}") from exc
    client = usable_client(session, client_id)
    if client is None:
        raise PageError("L'application qui demande la connexion n'est pas connue de HospiConnect, ou a été "
                        "désactivée. Prévenez le support informatique.", "unknown_client", client_id)
    if redirect_uri is None:
        raise PageError("La demande de connexion ne précise pas l'adresse de retour de l'application. "
                        "Prévenez le support informatique.", "missing_redirect_uri", client_id)
    if redirect_uri not in client.redirect_uris:
        raise PageError("L'adresse de retour demandée n'est pas enregistrée pour cette application : la "
                        "connexion est refusée par sécurité. Prévenez le support informatique.",
                        "unregistered_redirect_uri", client_id)

    state_raw = params.get("state")
    # Echoed in every redirect (RFC 6749 §4.1.2); an oversized one is refused below and not echoed.
    state = state_raw if isinstance(state_raw, str) and 0 < len(state_raw) <= MAX_LENGTHS["state"] else None

    def fail(error: str, description: str, reason: str | None = None) -> RedirectError:
        return RedirectError(error, description, redirect_uri=redirect_uri, state=state,
                             client_id=client.client_id, reason=reason)

    values: dict[str, str | None] = {}
    for name in SINGLE_VALUED:
        try:
            values[name] = _single(params, name)
        except ValueError:
            raise fail("invalid_request", f"Parameter {name} is repeated.") from None
        limit = MAX_LENGTHS.get(name)
        if limit and values[name] is not None and len(values[name] or "") > limit:
            raise fail("invalid_request", f"Parameter {name} is too long.")
    if _single(params, "request") is not None:
        raise fail("request_not_supported", "Request objects are not supported.")
    if _single(params, "request_uri") is not None:
        raise fail("request_uri_not_supported", "request_uri is not supported.")

    response_type = values["response_type"]
    if response_type is None:
        raise fail("invalid_request", "Missing response_type.")
    if response_type != "code":
        raise fail("unsupported_response_type", "Only response_type=code is supported.")
    if values["response_mode"] not in (None, "query"):
        raise fail("invalid_request", "Only response_mode=query is supported.")

    requested = (values["scope"] or "").split()
    if "openid" not in requested:
        raise fail("invalid_scope", "The openid scope is required.")
    # Scopes the client is not registered for are dropped (RFC 6749 §3.3), not refused.
    allowed = set(client.scopes.split()) & set(claims_mod.SCOPES)
    scope = tuple(dict.fromkeys(s for s in requested if s in allowed or s == "openid"))

    method = values["code_challenge_method"]
    challenge = values["code_challenge"]
    if challenge is None:
        raise fail("invalid_request", "PKCE is required: code_challenge is missing.", "pkce_missing")
    if method != "S256":
        raise fail("invalid_request", "PKCE code_challenge_method must be S256.", "pkce_method")
    if not S256_CHALLENGE_RE.match(challenge):
        raise fail("invalid_request", "Invalid code_challenge.", "pkce_challenge")

    try:
        prompt = checks.parse_prompt(values["prompt"])
    except ValueError:
        raise fail("invalid_request", "Invalid prompt value.") from None
    try:
        max_age = checks.parse_max_age(values["max_age"])
    except ValueError:
        raise fail("invalid_request", "max_age must be a non-negative integer.") from None
    try:
        claims_param = claims_mod.parse_claims_parameter(values["claims"])
    except claims_mod.InvalidClaimsParameter:
        raise fail("invalid_request", "Invalid claims parameter.") from None

    hint_sub: str | None = None
    if values["id_token_hint"] is not None:
        hint_sub = _verify_hint(session, settings, values["id_token_hint"] or "", client.client_id)
        if hint_sub is None:
            raise fail("invalid_request", "Invalid id_token_hint.", "invalid_id_token_hint")

    request = AuthorizationRequest(
        client_id=client.client_id, redirect_uri=redirect_uri, scope=scope, code_challenge=challenge,
        state=state, nonce=values["nonce"], prompt=prompt, max_age=max_age, login_hint=values["login_hint"],
        hint_sub=hint_sub, id_token_hint=hint_sub is not None, ui_locales=values["ui_locales"],
        acr_values=tuple((values["acr_values"] or "").split()), claims=claims_param,
    )
    return client, request


def _verify_hint(session: Session, settings: Settings, token: str, client_id: str) -> str | None:
    """Return the ``sub`` of an ID token this provider issued to ``client_id`` (expired ones included,
    Core §3.1.2.1), or None when the signature, ``iss`` or ``aud`` does not match."""
    try:
        claims = keys_mod.verify(session, token)
    except keys_mod.InvalidSignature:
        return None
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    sub = claims.get("sub")
    if claims.get("iss") != settings.issuer or client_id not in audiences or not isinstance(sub, str):
        return None
    return sub


# --- decision -------------------------------------------------------------------------------------------

def _identity_id_of(session: Session, public_id: str | None) -> int | None:
    if not public_id:
        return None
    return session.scalar(select(Identity.id).where(Identity.public_id == public_id))


def decide(session: Session, keys: InstanceKeys, settings: Settings, client: Client,
           request: AuthorizationRequest, sso: SsoSession | None, *, policy: Policy,
           interaction: Interaction | None = None, client_ip: str | None = None, post: bool = False,
           now: dt.datetime | None = None) -> Outcome:
    """Run the checks and the access policy and return the outcome: a redirect with a code, with an error,
    or to an interaction.

    Raises :class:`RedirectError` for a refusal (the view journals and redirects it), :class:`PolicyDenied`
    when the access policy denies it, or when a ``psc``-profile client (Pro Santé Connect) asks for a person
    it may not be delegated (hospiconnect.idp.psc_delegation: a one-factor session is stepped up instead when
    the person holds a compliant MIE).
    """
    now = now or utcnow()
    hint_identity = _identity_id_of(session, request.hint_sub) if request.id_token_hint else None
    mie = policy_gate.active_mie(session, sso.identity_id) if sso else None
    evaluation = checks.evaluate(
        request.request_facts(hint_identity), None, login_session.session_facts(sso),
        interactions.facts(interaction) if interaction is not None else None, mie.facts if mie else None, now)
    # While a sign-in is due anyway, the policy judges what does not depend on the person (class, network).
    login_due = bool(set(evaluation.reasons) & checks.LOGIN_REASONS)
    judged = None if login_due else sso
    gate = policy_gate.assess(session, policy, client, sso, mie, login_due=login_due, client_ip=client_ip,
                              now=now, issuing=not evaluation.reasons and evaluation.refusal is None)
    subject = login_session.public_id_of(session, judged.identity_id) if judged is not None else None
    policy_gate.journal(session, policy, gate, client_id=client.client_id, subject=subject, client_ip=client_ip)

    def refuse(error: str, description: str, reason: str) -> RedirectError:
        return RedirectError(error, description, redirect_uri=request.redirect_uri, state=request.state,
                             client_id=client.client_id, reason=reason)

    if gate.refusal is not None:
        raise PolicyDenied(refuse(gate.refusal.error, gate.refusal.description, gate.refusal.reason),
                           gate.messages)
    evaluation = checks.with_reasons(evaluation, gate.reasons)
    if evaluation.refusal is not None:
        refusal = evaluation.refusal
        raise refuse(refusal.error, refusal.description, refusal.reason)
    delegation_mfa = False
    if psc_delegation.is_psc(client) and judged is not None:
        # Pro Santé Connect delegates only paired persons with a compliant MIE (hospiconnect.idp.psc_delegation).
        try:
            verdict = psc_delegation.assess(session, settings, policy, judged, now=now)
        except psc_delegation.DelegationConfigError:
            verdict = psc_delegation.Verdict(reason=psc_delegation.CONFIGURATION_INVALID)
        if verdict.step_up:
            evaluation, delegation_mfa = checks.with_reasons(evaluation, ("mfa_required",)), True
        elif not verdict.allowed:
            raise PolicyDenied(refuse("access_denied", verdict.description, verdict.reason or "psc_refused"),
                               (verdict.message,) if verdict.message else ())
    if evaluation.reasons and "none" in request.prompt:
        error = checks.prompt_none_error(evaluation.reasons)
        raise refuse(error, f"prompt=none but {', '.join(evaluation.reasons)}.", evaluation.reasons[0])
    if evaluation.reasons:
        essential = claims_mod.essential_acr_values(request.claims)
        needs_mfa = gate.needs_mfa or delegation_mfa or any(checks.acr_rank(v) > 0 for v in essential)
        created = interactions.create(
            session, settings, client_id=client.client_id, params=request.to_params(),
            reasons=evaluation.reasons, needs_mfa=needs_mfa,
            session_identity_id=sso.identity_id if sso else None, client_ip=client_ip, now=now,
            step_up_types=gate.step_up_types, required_acr=gate.required_acr,
            policy_messages=gate.messages if judged is not None else ())
        return Outcome(status=303 if post else 302, location=f"/connexion/{created.id}")

    if sso is None or evaluation.acr is None:  # cannot happen: no reason left implies a session
        raise RuntimeError("authorization without session")
    code, row = tokens.create_code(
        session, keys, settings, client_id=client.client_id, identity_id=sso.identity_id, session_id=sso.id,
        redirect_uri=request.redirect_uri, scope=request.scope_string, nonce=request.nonce,
        code_challenge=request.code_challenge, claims=request.claims or None, auth_time=sso.auth_time,
        acr=evaluation.acr, amr=sso.amr, now=now)
    login_session.record_client(session, sso, client.client_id)
    public_id = login_session.public_id_of(session, sso.identity_id)
    audit.record(session, tags.OIDC_CODE_ISSUED, actor=public_id, subject=public_id, client_ip=client_ip,
                 details={"client_id": client.client_id, "class": client.sensitivity, "scope": request.scope_string,
                          "acr": evaluation.acr, "amr": sso.amr, "sid": sso.sid})
    location = add_query(request.redirect_uri, {"code": code, "state": request.state, "iss": settings.issuer})
    return Outcome(status=303 if post else 302, location=location)


def authorize(session: Session, keys: InstanceKeys, settings: Settings, params: Mapping[str, Any], *,
              cookie_value: str | None, client_ip: str | None, post: bool, policy: Policy) -> Outcome:
    """Handle an authorization request (GET query or POST form, Core §3.1.2.1) under the access ``policy``
    and return the outcome.

    Refusals are journaled (``oidc:authorize:refused``) and become a page or an error redirect.
    """
    try:
        client, request = validate(session, settings, params)
        sso = login_session.current(session, keys, settings, cookie_value)
        if sso is not None and sso.recovery_only:
            # A recovery code opens the self-service page only: for applications it is no session at all.
            sso = None
        return decide(session, keys, settings, client, request, sso, policy=policy, client_ip=client_ip,
                      post=post)
    except PageError as exc:
        _journal_refusal(session, client_id=exc.client_id, reason=exc.reason, error=None, client_ip=client_ip)
        return Outcome(status=400, message=exc.message)
    except RedirectError as exc:
        _journal_refusal(session, client_id=exc.client_id, reason=exc.reason, error=exc.error,
                         client_ip=client_ip)
        return Outcome(status=303 if post else 302, location=error_location(settings, exc))


def resume(session: Session, keys: InstanceKeys, settings: Settings, interaction_id: str, *,
           cookie_value: str | None, client_ip: str | None, policy: Policy) -> Outcome:
    """Resume an authorization request after its interaction (``/authorize/resume/<id>``).

    The interaction is consumed by one conditional UPDATE (no replay), then the checks and the access
    ``policy`` run again with what the person did during it: the code is issued, or a new interaction starts
    for what is still missing. A policy denial is a French page (403) whose link takes the person back to
    the client with ``access_denied``.
    """
    now = utcnow()
    interaction = session.get(Interaction, interaction_id) if len(interaction_id) <= 64 else None
    try:
        if interaction is None:
            raise PageError("Cette demande de connexion est introuvable. Retournez à l'application et "
                            "recommencez.", "unknown_interaction")
        if interaction.consumed_at is not None:
            audit.record(session, tags.AUTHN_INTERACTION_REPLAYED, actor=f"client:{interaction.client_id}",
                         client_ip=client_ip, outcome="refused", details={"client_id": interaction.client_id})
            raise PageError("Cette demande de connexion a déjà été utilisée. Retournez à l'application.",
                            "interaction_replayed", interaction.client_id)
        if now >= interaction.expires_at:
            raise PageError("Cette demande de connexion a expiré. Retournez à l'application et recommencez.",
                            "interaction_expired", interaction.client_id)
        if interaction.completed_at is None:
            return Outcome(status=302, location=f"/connexion/{interaction.id}")
        if not interactions.consume(session, interaction.id, now):
            raise PageError("Cette demande de connexion a déjà été utilisée. Retournez à l'application.",
                            "interaction_replayed", interaction.client_id)
        request = AuthorizationRequest.from_params(interactions.params_of(interaction))
        client = usable_client(session, interaction.client_id)
        if client is None or request.redirect_uri not in client.redirect_uris:
            raise PageError("L'application qui demande la connexion n'est plus autorisée. Prévenez le support "
                            "informatique.", "client_changed", interaction.client_id)
        sso = login_session.current(session, keys, settings, cookie_value, now=now)
        if sso is not None and sso.recovery_only:
            sso = None
        return decide(session, keys, settings, client, request, sso, policy=policy, interaction=interaction,
                      client_ip=client_ip, now=now)
    except PolicyDenied as exc:
        _journal_refusal(session, client_id=exc.client_id, reason=exc.reason, error=exc.error,
                         client_ip=client_ip)
        return Outcome(status=403, message=DENIED_MESSAGE, details=exc.messages, back=error_location(settings, exc))
    except PageError as exc:
        _journal_refusal(session, client_id=exc.client_id, reason=exc.reason, error=None, client_ip=client_ip)
        return Outcome(status=400, message=exc.message)
    except RedirectError as exc:
        _journal_refusal(session, client_id=exc.client_id, reason=exc.reason, error=exc.error,
                         client_ip=client_ip)
        return Outcome(status=302, location=error_location(settings, exc))


# --- ID tokens (Core §2, §3.1.3.6) ----------------------------------------------------------------------

def half_hash(value: str) -> str:
    """Return the left half of the SHA-256 of ``value``, base64url (``at_hash``, Core §3.1.3.6): SHA-256
    is the hash of both ES256 and RS256."""
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def id_token(session: Session, keys: InstanceKeys, settings: Settings, *, client: Client, identity: Identity,
             scope: str, auth_time: dt.datetime, acr: str, amr: list[str], sid: str | None, nonce: str | None,
             access_token: str | None, now: dt.datetime | None = None, signing_kid: str | None = None) -> str:
    """Return a signed ID token (Core §2): ``iss``, ``sub``, ``aud``, ``azp``, ``exp``
    (``id_token_minutes``), ``iat``, ``auth_time``, ``nonce`` when sent, ``acr``, ``amr``, ``sid``
    (Back-Channel Logout §2.1), ``at_hash``, and the claims of ``scope``. Signed with the client's
    algorithm (ES256 by default, RS256 on request); never ``none``. ``signing_kid``: the active key of that
    algorithm when the caller read it already in this transaction (hospiconnect.idp.keys.sign)."""
    now = now or utcnow()
    body = claims_mod.person_claims(identity, scope.split())
    body.update(iss=settings.issuer, aud=client.client_id, azp=client.client_id, iat=now,
                exp=now + dt.timedelta(minutes=settings.id_token_minutes), auth_time=auth_time, acr=acr,
                amr=sorted(set(amr)))
    if psc_delegation.is_psc(client):
        # Delegation by Pro Santé Connect: its claims, and amr mapped from the MIE types used (the decision to
        # delegate was taken at the authorization endpoint, see decide()).
        body.update(psc_delegation.person_claims(session, settings, identity))
        body["amr"] = psc_delegation.delegated_amr(amr, psc_delegation.load_amr_mapping(
            settings.psc_delegation_amr_file))
    if sid:
        body["sid"] = sid
    if nonce:
        body["nonce"] = nonce
    if access_token:
        body["at_hash"] = half_hash(access_token)
    return keys_mod.sign(session, keys, body, alg=id_token_alg(session, client), kid=signing_kid)
