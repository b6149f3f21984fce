"""Interactions: an authorization request waiting for the person (login, second factor).

When the checks of an authorization request fail (hospiconnect.idp.checks), the request is stored
server-side as an :class:`~hospiconnect.idp.models.Interaction` — random id of 192 bits, the validated
parameters, the reasons, an expiry — and the browser is sent to ``/connexion/<id>``. The login pages drive
it through the services below, then send the browser (303) to ``/authorize/resume/<id>``, where the checks
run again with what was done here:

1. :func:`get_interaction` — the interaction, or a clear exception (unknown, expired, already used);
2. :func:`record_login` — the person proved their identity with a first factor (or with a passwordless
   WebAuthn assertion with user verification, which is two factors at once: its ``amr`` holds ``mfa``);
3. :func:`record_second_factor` — a second factor, after :func:`record_login` or on top of the person's
   existing session (step-up);
4. :func:`complete` — opens or raises the SSO session with this interaction's factors and returns the
   cookie value to set; the interaction is then ready to resume;
5. or, instead of 2–4, :func:`complete_emergency` — the person used an emergency credential (bris de glace):
   a session of its own, one factor, capped at the credential's expiry.

:func:`describe` gathers what a page shows (client name, French explanations of the reasons, the
identifier to pre-fill, whether a second factor is needed) and :func:`content_security_policy` the header
its responses must carry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
from typing import Any, Iterable
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators.emergency import EmergencyUse
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.directory.models import ONLY_IDENTITY, Identity
from hospiconnect.errors import Conflict, HospiConnectError, NotFound
from hospiconnect.idp import checks, login_session
from hospiconnect.idp.models import Client, Interaction, SsoSession
from hospiconnect.settings import Settings

#: RFC 8176 values an authenticator may report (the whole registry: Pro Santé Connect reports its own).
KNOWN_AMR: frozenset[str] = frozenset({
    "face", "fpt", "geo", "hwk", "iris", "kba", "mca", "mfa", "otp", "pin", "pop", "pwd", "rba", "retina", "sc",
    "sms", "swk", "tel", "user", "vbm", "wia"})
#: National MIE (Pro Santé Connect): each is two factors by itself (a card and its PIN code; a phone
#: application unlocked by a PIN code or biometrics), and the ANS verified the identity of its holder.
NATIONAL_MIE_TYPES: frozenset[str] = frozenset({"cps", "e-cps"})
#: Not an RFC 8176 value: the mark of an authentication with an emergency credential (bris de glace), which
#: relying parties see in ``amr`` (hospiconnect.authenticators.emergency).
EMERGENCY_AMR = "emergency"
#: The class whose pages speak of health data and of the RIE's deadline (the client's class otherwise only
#: matters to the access policy).
HEALTH_DATA_CLASS = "health-data"
#: Values that prove a second factor when added to a first one.
SECOND_FACTOR_AMR: frozenset[str] = frozenset({"otp", "hwk", "swk"})

#: What each reason means for the person (shown by the login pages).
REASON_MESSAGES: dict[str, str] = {
    "no_session": "Identifiez-vous pour accéder à l'application.",
    "login_prompt": "L'application demande que vous vous identifiiez de nouveau.",
    "max_age": "Votre dernière identification est trop ancienne pour cette application : "
               "identifiez-vous de nouveau.",
    "auth_too_old": "La politique d'accès de l'établissement demande, pour cette application, une "
                    "identification plus récente : identifiez-vous de nouveau.",
    "id_token_hint_mismatch": "L'application attend une autre personne que celle actuellement connectée : "
                              "identifiez-vous avec le bon compte.",
    "mfa_required": "Cette application donne accès à des données de santé : un second facteur "
                    "(application d'authentification ou clé de sécurité) est obligatoire.",
    "essential_acr": "Cette application exige un niveau de garantie plus élevé : confirmez votre identité "
                     "avec votre second facteur.",
}

#: ``mfa_required`` for an application whose class is not health data (its class requires two factors).
MFA_REQUIRED_MESSAGE = ("La politique d'accès de l'établissement exige deux facteurs pour cette application : "
                        "confirmez votre identité avec votre second facteur.")

NO_SECOND_FACTOR_MESSAGE = (
    "Vous n'avez encore aucun second facteur actif. Adressez-vous au guichet d'enrôlement ou à votre "
    "référent pour en obtenir un : sans lui, l'accès à cette application est impossible.")


class InteractionNotFound(NotFound):
    """No interaction has this id."""

    code = "interaction_not_found"

    def __init__(self) -> None:
        super().__init__("Cette demande de connexion est introuvable. Retournez à l'application et "
                         "recommencez.")


class InteractionExpired(HospiConnectError):
    """The interaction is past its expiry, or has already been completed and used."""

    code = "interaction_expired"
    http_status = 400

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "Cette demande de connexion a expiré. Retournez à l'application et "
                                    "recommencez.")


class InteractionStateError(Conflict):
    """A step was called out of order (a second factor before knowing the person, completing without a
    login…)."""

    code = "interaction_state"


class LoginRefused(HospiConnectError):
    """The identity cannot sign in (inactive). Same message as a wrong password: nothing is revealed."""

    code = "invalid_credentials"
    http_status = 401

    def __init__(self) -> None:
        super().__init__("Identifiant ou mot de passe incorrect.")


@dataclasses.dataclass(frozen=True)
class InteractionView:
    """What a login page needs to show about an interaction."""

    id: str
    client_id: str
    client_name: str
    health_data: bool
    reasons: tuple[str, ...]
    messages: tuple[str, ...]
    login_hint: str | None
    #: The person already known (signed in during this interaction, or the session's person for a
    #: step-up); None until the first factor.
    identity_id: int | None
    needs_second_factor: bool
    #: The person is known and has no active second factor: they cannot complete a step-up.
    lacks_second_factor: bool
    resume_url: str
    #: Why the access policy asks for more (French), when it does.
    policy_messages: tuple[str, ...] = ()
    #: The client's class in the access policy.
    app_class: str | None = None


# --- creation and lookup ------------------------------------------------------------------------------

def new_id() -> str:
    """Return a fresh interaction id: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def create(session: Session, settings: Settings, *, client_id: str, params: dict[str, Any],
           reasons: Iterable[str], needs_mfa: bool, session_identity_id: int | None,
           client_ip: str | None = None, now: dt.datetime | None = None,
           step_up_types: Iterable[str] | None = None, required_acr: str | None = None,
           policy_messages: Iterable[str] = ()) -> Interaction:
    """Store an interaction for the validated authorization request ``params`` and return it.

    ``needs_mfa``: the client requires two factors (its class, per the access policy, or an essential
    ``acr`` above ``eidas1``); ``session_identity_id``: the person of the live session, whose step-up this
    may be. From the access policy (hospiconnect.idp.policy_gate): ``step_up_types``, the MIE types the
    second-factor page may offer (None: any the person has; meant for ``session_identity_id``, or for whoever
    signs in when there is no session); ``required_acr``, the level the class needs; ``policy_messages``, why
    (French). Journals ``authn:interaction:started``.
    """
    now = now or utcnow()
    reasons = list(reasons)
    meta: dict[str, Any] = {"params": params, "needs_mfa": needs_mfa, "session_identity_id": session_identity_id}
    if step_up_types is not None:
        meta["step_up"] = {"types": sorted(set(step_up_types)), "identity_id": session_identity_id}
    if required_acr:
        meta["required_acr"] = required_acr
    messages = [m for m in policy_messages if isinstance(m, str)][:5]
    if messages:
        meta["policy_messages"] = messages
    interaction = Interaction(
        id=new_id(), client_id=client_id, reasons_json=json.dumps(reasons), created_at=now,
        expires_at=now + dt.timedelta(minutes=settings.interaction_minutes), factors_json="[]",
        request_json=json.dumps(meta, separators=(",", ":")),
    )
    session.add(interaction)
    session.flush()
    audit.record(session, tags.AUTHN_INTERACTION_STARTED, actor=f"client:{client_id}", client_ip=client_ip,
                 outcome="info", details={"client_id": client_id, "reasons": reasons})
    return interaction


def get_interaction(session: Session, interaction_id: str, now: dt.datetime | None = None) -> Interaction:
    """Return the interaction ``interaction_id`` while it can still be acted upon.

    Raises :class:`InteractionNotFound` for an unknown id and :class:`InteractionExpired` when it is past
    its expiry or was already used to resume the authorization request.
    """
    if not isinstance(interaction_id, str) or not interaction_id or len(interaction_id) > 64:
        raise InteractionNotFound()
    interaction = session.get(Interaction, interaction_id)
    if interaction is None:
        raise InteractionNotFound()
    if interaction.consumed_at is not None:
        raise InteractionExpired("Cette demande de connexion a déjà été utilisée. Retournez à l'application.")
    if (now or utcnow()) >= interaction.expires_at:
        raise InteractionExpired()
    return interaction


def _meta(interaction: Interaction) -> dict[str, Any]:
    try:
        data = json.loads(interaction.request_json)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def params_of(interaction: Interaction) -> dict[str, Any]:
    """Return the validated authorization request parameters stored with the interaction."""
    params = _meta(interaction).get("params")
    return params if isinstance(params, dict) else {}


def login_hint(interaction: Interaction) -> str | None:
    """Return the ``login_hint`` of the request (the identifier to pre-fill), if any."""
    value = params_of(interaction).get("login_hint")
    return value if isinstance(value, str) and value else None


def person_id(interaction: Interaction) -> int | None:
    """Return the person the interaction is about: who signed in during it, else the person of the session
    it may raise (step-up), else None."""
    if interaction.identity_id is not None:
        return interaction.identity_id
    value = _meta(interaction).get("session_identity_id")
    return value if isinstance(value, int) else None


def needs_second_factor(interaction: Interaction) -> bool:
    """Return True when the client requires two factors and this interaction has not proven them yet."""
    return bool(_meta(interaction).get("needs_mfa")) and "mfa" not in interaction.factors


def waive_second_factor(session: Session, interaction: Interaction, exception_ids: Iterable[str], *,
                        client_ip: str | None = None) -> None:
    """Record that the person who signed in needs no second factor after all: exceptions (dérogations) in force
    for them let the first factor through (:func:`hospiconnect.idp.policy_gate.login_suffices`). The decision at
    resumption judges again and records their use. Journals ``authn:interaction:second_factor_waived``."""
    meta = _meta(interaction)
    ids = sorted(set(exception_ids))
    meta["needs_mfa"] = False
    meta["waived_by"] = ids
    interaction.request_json = json.dumps(meta, separators=(",", ":"))
    session.flush()
    public_id = login_session.public_id_of(session, interaction.identity_id) if interaction.identity_id else None
    audit.record(session, tags.AUTHN_INTERACTION_MFA_WAIVED, actor=public_id or f"client:{interaction.client_id}",
                 subject=public_id, client_ip=client_ip, outcome="info",
                 details={"client_id": interaction.client_id, "exceptions": ids, "amr": interaction.factors})


def step_up_types(interaction: Interaction) -> frozenset[str] | None:
    """Return the MIE types the second-factor page may offer to the person of the interaction, or None
    when any of theirs will do. A restriction computed for one person does not bind another who signs in
    during the interaction (their own decision follows at resumption)."""
    step_up = _meta(interaction).get("step_up")
    if not isinstance(step_up, dict) or not isinstance(step_up.get("types"), list):
        return None
    meant_for = step_up.get("identity_id")
    if meant_for is not None and meant_for != person_id(interaction):
        return None
    return frozenset(t for t in step_up["types"] if isinstance(t, str))


def required_acr(interaction: Interaction) -> str | None:
    """Return the level the client's class needs (``eidas3``: a security key with user verification)."""
    value = _meta(interaction).get("required_acr")
    return value if isinstance(value, str) else None


def policy_messages(interaction: Interaction) -> tuple[str, ...]:
    """Return the access policy's French explanations stored with the interaction."""
    value = _meta(interaction).get("policy_messages")
    return tuple(m for m in value if isinstance(m, str)) if isinstance(value, list) else ()


def reason_messages(interaction: Interaction) -> list[str]:
    """Return the French explanation of each reason of the interaction, in order."""
    return [REASON_MESSAGES[r] for r in interaction.reasons if r in REASON_MESSAGES]


def resume_url(interaction: Interaction) -> str:
    """Return where the page sends the browser (303) once :func:`complete` has been called."""
    return f"/authorize/resume/{interaction.id}"


def describe(session: Session, interaction: Interaction) -> InteractionView:
    """Return what a login page shows about ``interaction``."""
    client = session.scalar(select(Client).where(Client.client_id == interaction.client_id))
    person = person_id(interaction)
    facts = login_session.person_facts(session, person)
    return InteractionView(
        id=interaction.id, client_id=interaction.client_id,
        client_name=client.name if client else interaction.client_id,
        health_data=bool(client and client.sensitivity == HEALTH_DATA_CLASS),
        reasons=tuple(interaction.reasons), messages=tuple(reason_messages(interaction)),
        login_hint=login_hint(interaction), identity_id=person,
        needs_second_factor=needs_second_factor(interaction),
        lacks_second_factor=facts is not None and not facts.has_second_factor,
        resume_url=resume_url(interaction), policy_messages=policy_messages(interaction),
        app_class=client.sensitivity if client else None,
    )


def content_security_policy(interaction: Interaction | None, *, also: str | None = None) -> str:
    """Return the Content-Security-Policy for a page of ``interaction``.

    ``frame-ancestors 'none'`` (no clickjacking of the login, SECURITY.md item 10). ``form-action`` must
    allow the client's redirect URI as well as ``'self'``: browsers apply it to the redirects that follow a
    form submission, and the login form ends, through ``/authorize/resume``, at the client.
    """
    redirect_uri = params_of(interaction).get("redirect_uri") if interaction is not None else None
    return csp_allowing_redirect(redirect_uri if isinstance(redirect_uri, str) else None, also=also)


def psc_form_target(settings: Settings) -> str | None:
    """Return the URL whose origin the sign-in page's « Se connecter avec Pro Santé Connect » form redirects
    to (PSC's, from its discovery URL), or None (not configured, or the simulator of this very server)."""
    if not settings.psc_enabled or settings.psc_simulator_enabled:
        return None
    return settings.psc_discovery_url or None


def csp_allowing_redirect(redirect_uri: str | None, *, also: str | None = None) -> str:
    """Return the provider's Content-Security-Policy whose ``form-action`` also allows the origin of
    ``redirect_uri`` (a page whose form ends in a redirect to a client), and of ``also`` when given."""
    targets = ["'self'"]
    for url in (redirect_uri, also):
        if not url:
            continue
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if parts.scheme in ("http", "https") and parts.netloc and origin not in targets:
            targets.append(origin)
    return ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            f"frame-ancestors 'none'; form-action {' '.join(targets)}; base-uri 'none'; object-src 'none'")


# --- the steps ------------------------------------------------------------------------------------------

def _check_amr(amr: Iterable[str]) -> list[str]:
    values = sorted(set(amr)) if not isinstance(amr, str) else []
    if not values or any(not isinstance(v, str) or v not in KNOWN_AMR for v in values):
        raise ValueError(f"unknown authentication method references {values!r}")
    return values


def _usable(session: Session, interaction: Interaction, now: dt.datetime) -> None:
    if interaction.completed_at is not None:
        raise InteractionExpired("Cette demande de connexion est déjà terminée. Retournez à l'application.")
    get_interaction(session, interaction.id, now)


def record_login(session: Session, interaction: Interaction, identity_id: int, amr: list[str], *,
                 client_ip: str | None = None, now: dt.datetime | None = None) -> None:
    """Record that ``identity_id`` proved their identity during the interaction with the factors ``amr``
    (RFC 8176 values, e.g. ``["pwd"]``, or ``["hwk", "mfa", "pin"]`` for WebAuthn with user verification).

    A later call replaces the earlier login (the person changed account). Journals
    ``authn:interaction:login``. Raises :class:`InteractionExpired`, :class:`LoginRefused` when the identity
    is not active, :class:`ValueError` for unknown ``amr`` values (a programming error).
    """
    now = now or utcnow()
    values = _check_amr(amr)
    _usable(session, interaction, now)
    identity = session.get(Identity, identity_id, options=ONLY_IDENTITY)
    if identity is None or not identity.is_active:
        raise LoginRefused()
    interaction.identity_id = identity_id
    interaction.factors_json = json.dumps(values)
    session.flush()
    audit.record(session, tags.AUTHN_INTERACTION_LOGIN, actor=identity.public_id, subject=identity.public_id,
                 client_ip=client_ip, details={"client_id": interaction.client_id, "amr": values})


def record_second_factor(session: Session, interaction: Interaction, amr: list[str], *,
                         client_ip: str | None = None, now: dt.datetime | None = None) -> None:
    """Record a second factor (``["otp"]``, ``["hwk", "user"]``…) proven by the person of the interaction
    (:func:`person_id`): the interaction's factors then include ``mfa``. Journals
    ``authn:interaction:second_factor``.

    Raises :class:`InteractionStateError` when the person is not known yet (call :func:`record_login`
    first) or ``amr`` holds no second-factor method, :class:`InteractionExpired`.
    """
    now = now or utcnow()
    values = _check_amr(amr)
    _usable(session, interaction, now)
    person = person_id(interaction)
    if person is None:
        raise InteractionStateError("Identifiez-vous d'abord avec votre identifiant et votre mot de passe.")
    if not set(values) & SECOND_FACTOR_AMR:
        raise InteractionStateError("Ce moyen d'identification n'est pas un second facteur.")
    interaction.factors_json = json.dumps(sorted(set(interaction.factors) | set(values) | {"mfa"}))
    session.flush()
    public_id = login_session.public_id_of(session, person)
    audit.record(session, tags.AUTHN_INTERACTION_SECOND_FACTOR, actor=public_id, subject=public_id,
                 client_ip=client_ip, details={"client_id": interaction.client_id, "amr": values})


def complete(session: Session, interaction: Interaction, *, client_ip: str | None, user_agent: str | None,
             existing_sso: SsoSession | None, keys: InstanceKeys | None = None,
             settings: Settings | None = None, now: dt.datetime | None = None) -> tuple[SsoSession, str]:
    """Finish the interaction: open or raise the SSO session and return ``(session, cookie value)``.

    The caller sets the cookie (:func:`hospiconnect.idp.login_session.set_cookie`) and redirects (303) to
    :func:`resume_url`. ``existing_sso`` is the browser's live session
    (:func:`hospiconnect.idp.login_session.current`), or None.

    * After :func:`record_login`: the session gets this login's factors and a new ``auth_time``; an
      ``existing_sso`` of the same person keeps its ``sid``, one of another person is ended.
    * Step-up (no login here, a second factor recorded): ``existing_sso`` must be the person's; its ``amr``
      becomes the union with the new factors (``mfa`` included) and ``mfa_time`` now.

    ``keys``/``settings`` default to the running application's. Journals
    ``authn:interaction:completed``. Raises :class:`InteractionStateError` when there is nothing to
    complete, :class:`InteractionExpired` when it is too late or already done (one conditional UPDATE
    decides, so a double submission opens one session).
    """
    keys, settings = login_session.resolve_runtime(keys, settings)
    now = now or utcnow()
    _usable(session, interaction, now)
    return _complete(session, interaction, client_ip=client_ip, user_agent=user_agent, existing_sso=existing_sso,
                     keys=keys, settings=settings, now=now)


def _complete(session: Session, interaction: Interaction, *, client_ip: str | None, user_agent: str | None,
              existing_sso: SsoSession | None, keys: InstanceKeys, settings: Settings, now: dt.datetime,
              national: NationalSignIn | None = None) -> tuple[SsoSession, str]:
    factors = interaction.factors
    person = person_id(interaction)
    if interaction.identity_id is not None:
        amr = factors
    elif (person is not None and existing_sso is not None and existing_sso.ended_at is None
          and existing_sso.identity_id == person and "mfa" in factors):
        amr = sorted(set(existing_sso.amr) | set(factors))
    else:
        raise InteractionStateError("Identifiez-vous d'abord avec votre identifiant et votre mot de passe.")
    if person is None:  # for the type checker: person_id() is identity_id when it is set
        raise InteractionStateError("Identifiez-vous d'abord.")
    identity = session.get(Identity, person, options=ONLY_IDENTITY)
    if identity is None or not identity.is_active:
        raise LoginRefused()
    done = session.execute(
        update(Interaction).where(Interaction.id == interaction.id, Interaction.completed_at.is_(None),
                                  Interaction.consumed_at.is_(None), Interaction.expires_at > now)
        .values(completed_at=now).execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not done:
        raise InteractionExpired("Cette demande de connexion est déjà terminée. Retournez à l'application.")
    set_committed_value(interaction, "completed_at", now)  # what the UPDATE wrote: nothing more to flush
    if national is not None:
        acr = national.acr
    else:
        facts = login_session.person_facts(session, person)
        acr = checks.acr_for(amr, bool(facts and facts.proofed))
    sso, cookie = login_session.open(session, keys, settings, identity_id=person, amr=amr, acr=acr,
                                     mfa="mfa" in factors, existing=existing_sso, client_ip=client_ip,
                                     user_agent=user_agent, now=now,
                                     national_mie=national.mie_type if national is not None else None)
    extra = {"national_mie": national.mie_type, "psc_acr": national.psc_acr} if national is not None else {}
    audit.record(session, tags.AUTHN_INTERACTION_COMPLETED, actor=identity.public_id,
                 subject=identity.public_id, client_ip=client_ip,
                 details={"client_id": interaction.client_id, "amr": sorted(set(amr)), "acr": acr,
                          "sid": sso.sid, **extra})
    return sso, cookie


@dataclasses.dataclass(frozen=True)
class NationalSignIn:
    """A sign-in through Pro Santé Connect, as the session records it (:func:`national_sign_in`)."""

    mie_type: str
    amr: tuple[str, ...]
    acr: str
    psc_acr: str


def national_sign_in(mie_type: str, psc_amr: Iterable[str], psc_acr: str | None) -> NationalSignIn:
    """Return what a sign-in with the national MIE ``mie_type`` through Pro Santé Connect records (pure).

    * ``amr``: the RFC 8176 values PSC reported (others dropped), with ``mfa`` — a national MIE is two factors
      by itself (:data:`NATIONAL_MIE_TYPES`);
    * ``acr``: the higher of what PSC reported and what those factors reach for an identity the ANS verified
      (:func:`hospiconnect.idp.checks.acr_for`: ``hwk`` with ``pin`` — the card — ``eidas3``, else ``eidas2``).
      PSC commonly answers ``eidas1`` whatever the MIE, while the RIE counts both national MIE as compliant;
      the access policy still caps the level by each type's ``max_acr`` (rie-2026.yaml: e-CPS ``eidas2``).

    Raises :class:`ValueError` for a type that is not a national MIE.
    """
    if mie_type not in NATIONAL_MIE_TYPES:
        raise ValueError(f"not a national MIE: {mie_type!r}")
    amr = tuple(sorted({v for v in psc_amr if isinstance(v, str) and v in KNOWN_AMR} | {"mfa"}))
    reported = psc_acr if psc_acr in checks.ACR_LEVELS else "eidas1"
    acr = max(reported, checks.acr_for(amr, proofed=True), key=checks.acr_rank)
    return NationalSignIn(mie_type=mie_type, amr=amr, acr=acr, psc_acr=str(psc_acr or ""))


def complete_national(session: Session, interaction: Interaction, identity_id: int, national: NationalSignIn, *,
                      client_ip: str | None, user_agent: str | None, existing_sso: SsoSession | None,
                      keys: InstanceKeys | None = None, settings: Settings | None = None,
                      now: dt.datetime | None = None) -> tuple[SsoSession, str]:
    """Finish the interaction with a sign-in through Pro Santé Connect (the national identity already
    found linked to ``identity_id``); return ``(session, cookie value)``.

    Whatever the interaction had recorded before is replaced by this login (:func:`record_login` with
    ``national.amr``); the session opened (or renewed, for the same person) records the national MIE and
    ``national.acr``. Journals ``authn:interaction:login`` and ``authn:interaction:completed`` (with the
    national MIE and PSC's own ``acr``). Raises :class:`InteractionExpired`, :class:`LoginRefused`.
    """
    keys, settings = login_session.resolve_runtime(keys, settings)
    now = now or utcnow()
    record_login(session, interaction, identity_id, list(national.amr), client_ip=client_ip, now=now)
    return _complete(session, interaction, client_ip=client_ip, user_agent=user_agent, existing_sso=existing_sso,
                     keys=keys, settings=settings, now=now, national=national)


def complete_emergency(session: Session, interaction: Interaction, use: EmergencyUse, *, client_ip: str | None,
                       user_agent: str | None, existing_sso: SsoSession | None, keys: InstanceKeys | None = None,
                       settings: Settings | None = None, now: dt.datetime | None = None) -> tuple[SsoSession, str]:
    """Finish the interaction with an emergency credential just spent
    (:func:`hospiconnect.authenticators.emergency.redeem_emergency_credential`); return ``(session, cookie)``.

    The person of ``use`` becomes the interaction's, with the credential's ``amr`` (``emergency``, and ``pwd``
    when the password was checked) and nothing else: whatever the interaction or the browser had proven before
    is dropped. The browser's live session, whoever it belongs to, is ended (reason ``emergency_sign_in``) and a
    new one opened at ``acr`` ``eidas1`` that cannot outlive the credential (``use.session_until``) — an
    emergency session never inherits an earlier session's second factor. Journals ``authn:interaction:login``
    and ``authn:interaction:completed`` (with the credential). Raises :class:`InteractionExpired` (one
    conditional UPDATE decides), :class:`LoginRefused` for an identity that is no longer active.
    """
    keys, settings = login_session.resolve_runtime(keys, settings)
    now = now or utcnow()
    values = sorted(set(use.amr))
    if EMERGENCY_AMR not in values or "mfa" in values:
        raise ValueError(f"not an emergency authentication: {values!r}")
    _usable(session, interaction, now)
    identity = session.get(Identity, use.identity_id, options=ONLY_IDENTITY)
    if identity is None or not identity.is_active:
        raise LoginRefused()
    done = session.execute(
        update(Interaction).where(Interaction.id == interaction.id, Interaction.completed_at.is_(None),
                                  Interaction.consumed_at.is_(None), Interaction.expires_at > now)
        .values(completed_at=now, identity_id=identity.id, factors_json=json.dumps(values))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not done:
        raise InteractionExpired("Cette demande de connexion est déjà terminée. Retournez à l'application.")
    for name, value in (("completed_at", now), ("identity_id", identity.id), ("factors_json", json.dumps(values))):
        set_committed_value(interaction, name, value)
    audit.record(session, tags.AUTHN_INTERACTION_LOGIN, actor=identity.public_id, subject=identity.public_id,
                 client_ip=client_ip, details={"client_id": interaction.client_id, "amr": values,
                                               "emergency_credential": use.credential_id})
    if existing_sso is not None and existing_sso.ended_at is None:
        login_session.end(session, existing_sso, reason="emergency_sign_in", keys=keys, settings=settings, now=now)
    sso, cookie = login_session.open(session, keys, settings, identity_id=identity.id, amr=values, acr=use.acr,
                                     mfa=False, existing=None, client_ip=client_ip, user_agent=user_agent, now=now,
                                     until=use.session_until)
    audit.record(session, tags.AUTHN_INTERACTION_COMPLETED, actor=identity.public_id, subject=identity.public_id,
                 client_ip=client_ip, details={"client_id": interaction.client_id, "amr": values, "acr": use.acr,
                                               "sid": sso.sid, "emergency_credential": use.credential_id,
                                               "session_until": sso.expires_at.isoformat()})
    return sso, cookie


def open_recovery_session(session: Session, interaction: Interaction, *, client_ip: str | None,
                          user_agent: str | None, existing_sso: SsoSession | None,
                          keys: InstanceKeys | None = None, settings: Settings | None = None,
                          now: dt.datetime | None = None) -> tuple[SsoSession, str]:
    """Open (or renew) a **recovery-only** session for the person of the interaction, who has just spent a
    recovery code (:func:`hospiconnect.authenticators.services.use_recovery_code`); return
    ``(session, cookie value)``.

    A recovery code is not a second factor: the session gets only the factors already proven (this
    interaction's login, or the ``existing_sso`` of the same person for a step-up), never ``mfa`` from the
    code, and the interaction is **not** completed — the authorization request cannot go on and simply
    expires. The session is flagged ``recovery_only``: it is meant for the self-service page. Raises
    :class:`InteractionStateError` when the person is not known, :class:`InteractionExpired`,
    :class:`LoginRefused` for an identity that is no longer active.
    """
    keys, settings = login_session.resolve_runtime(keys, settings)
    now = now or utcnow()
    _usable(session, interaction, now)
    person = person_id(interaction)
    if interaction.identity_id is not None:
        amr = interaction.factors
    elif (person is not None and existing_sso is not None and existing_sso.ended_at is None
          and existing_sso.identity_id == person):
        amr = existing_sso.amr
    else:
        raise InteractionStateError("Identifiez-vous d'abord avec votre identifiant et votre mot de passe.")
    if person is None:  # for the type checker: person_id() is identity_id when it is set
        raise InteractionStateError("Identifiez-vous d'abord.")
    identity = session.get(Identity, person, options=ONLY_IDENTITY)
    if identity is None or not identity.is_active:
        raise LoginRefused()
    facts = login_session.person_facts(session, person)
    return login_session.open(session, keys, settings, identity_id=person, amr=amr,
                              acr=checks.acr_for(amr, bool(facts and facts.proofed)), mfa=False,
                              existing=existing_sso, client_ip=client_ip, user_agent=user_agent, now=now,
                              recovery_only=True)


def consume(session: Session, interaction_id: str, now: dt.datetime | None = None) -> bool:
    """Mark a completed interaction as used by ``/authorize/resume`` — one conditional UPDATE, so that it
    cannot be replayed. Returns True for the one caller that consumed it."""
    now = now or utcnow()
    return bool(session.execute(
        update(Interaction).where(Interaction.id == interaction_id, Interaction.consumed_at.is_(None),
                                  Interaction.completed_at.is_not(None), Interaction.expires_at > now)
        .values(consumed_at=now).execution_options(synchronize_session=False)
    ).rowcount)  # type: ignore[attr-defined]


def purge_expired(session: Session, *, before: dt.datetime) -> int:
    """Delete the interactions that expired before ``before`` (periodic job); return how many."""
    return session.execute(delete(Interaction).where(Interaction.expires_at < before)
                           .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]


def facts(interaction: Interaction) -> checks.InteractionFacts:
    """Return what :func:`hospiconnect.idp.checks.evaluate` needs to know about the interaction."""
    return checks.InteractionFacts(identity_id=interaction.identity_id, completed_at=interaction.completed_at,
                                   factors=tuple(interaction.factors))
