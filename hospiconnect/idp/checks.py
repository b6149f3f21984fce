"""Authorization checks of the OpenID provider: may this authorization request be answered now? (pure)

Modelled on the prompts and checks of node-oidc-provider: an authorization request is evaluated against
the SSO session, the person and, when the request resumes after an interaction, what the person did
during that interaction. The result is a list of **reasons** (failed checks). No reason: the code can be
issued. Reasons and ``prompt=none``: an OAuth error (OpenID Connect Core §3.1.2.6). Reasons otherwise: an
interaction (login page, second factor…), after which the checks run again — a login done during *this*
interaction satisfies ``prompt=login`` and ``max_age``, so the person is never sent round in a loop.

Some requests can never be satisfied (an essential ``acr`` the person cannot reach): they give a
:class:`Refusal` instead of reasons, never a silently lower level (SECURITY.md item 8).

Reasons, in the order they are reported:

``no_session``
    no live SSO session in this browser;
``login_prompt``
    ``prompt=login`` and no login was done during this interaction (Core §3.1.2.1);
``max_age``
    ``auth_time`` is older than ``max_age`` seconds and no login was done during this interaction;
``id_token_hint_mismatch``
    the person of the ``id_token_hint`` is not the person of the session;
``auth_too_old``
    the access policy wants a more recent authentication for the client's class (its ``max_auth_age``);
``mfa_required``
    the client's class requires two factors and the session has not proven them (``amr`` lacks ``mfa``) —
    whether or not the person has a second factor to offer (the page explains);
``essential_acr``
    an essential ``acr`` (``claims`` parameter, Core §5.5.1.1) — or a level the access policy requires for
    the client's class — that the session does not meet but that the person can meet with a second factor.

What a client's class requires is the access policy's answer (:mod:`hospiconnect.idp.policy_gate`, which
adds ``auth_too_old``, ``mfa_required`` and ``essential_acr`` through :func:`with_reasons`); :func:`evaluate`
then gets no class (``sensitivity=None``). Given a class, it applies the built-in fallback rule: two factors
for ``health-data``.

Everything here takes and returns plain values: no database, no Flask.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Iterable, Sequence

#: Authentication context classes, lowest first (eIDAS levels of assurance as used by the ANS).
ACR_LEVELS: tuple[str, ...] = ("eidas1", "eidas2", "eidas3")

#: Every reason :func:`evaluate` can report, in reporting order.
REASONS: tuple[str, ...] = (
    "no_session", "login_prompt", "max_age", "auth_too_old", "id_token_hint_mismatch", "mfa_required",
    "essential_acr",
)

#: Values of ``prompt`` accepted at the authorization endpoint (Core §3.1.2.1). ``consent`` and
#: ``select_account`` are accepted and need nothing: clients are registered by the establishment (no
#: consent screen) and a browser holds one session.
PROMPT_VALUES: frozenset[str] = frozenset({"none", "login", "consent", "select_account"})

#: RFC 8176 values that record a user verification by the authenticator itself (WebAuthn UV flag, see
#: hospiconnect.authenticators.amr).
USER_VERIFICATION_AMR: frozenset[str] = frozenset({"pin"})

# Reasons that mean "the person must sign in again" (prompt=none → login_required); the others mean
# "something more than a sign-in" (prompt=none → interaction_required).
LOGIN_REASONS: frozenset[str] = frozenset({"no_session", "login_prompt", "max_age", "auth_too_old",
                                           "id_token_hint_mismatch"})


def acr_for(amr: Iterable[str], proofed: bool) -> str:
    """Return the ``acr`` level that an authentication with ``amr`` (RFC 8176 values) reaches.

    ``proofed``: the person's second-factor MIE was issued after an identity check (``Mie.proofing_method``
    set). The mapping, kept in this one function so that it can be made configurable:

    * ``eidas3``: two factors by a hardware authenticator that verified the user (``hwk`` with ``pin``,
      i.e. WebAuthn with the UV flag — phishing-resistant), identity proofed;
    * ``eidas2``: two factors (``mfa``), identity proofed;
    * ``eidas1``: anything else (one factor, or two factors without a proofed MIE).
    """
    values = set(amr)
    two_factors = "mfa" in values
    if two_factors and proofed and "hwk" in values and values & USER_VERIFICATION_AMR:
        return "eidas3"
    if two_factors and proofed:
        return "eidas2"
    return "eidas1"


def acr_rank(acr: str | None) -> int:
    """Return the position of ``acr`` in :data:`ACR_LEVELS` (0 = lowest), or -1 for an unknown value."""
    try:
        return ACR_LEVELS.index(acr)  # type: ignore[arg-type]
    except ValueError:
        return -1


@dataclasses.dataclass(frozen=True)
class RequestFacts:
    """What the authorization request asks for (already validated)."""

    prompt: frozenset[str] = frozenset()
    max_age: int | None = None
    #: Voluntary ``acr_values`` (Core §3.1.2.1), in the client's order.
    acr_values: tuple[str, ...] = ()
    #: Acceptable values of an *essential* ``acr`` claim (``claims`` parameter, Core §5.5.1.1); empty when
    #: the client did not make ``acr`` essential.
    essential_acr: tuple[str, ...] = ()
    #: An ``id_token_hint`` was sent and verified; ``hint_identity_id`` is its person (None: unknown ``sub``).
    id_token_hint: bool = False
    hint_identity_id: int | None = None


@dataclasses.dataclass(frozen=True)
class SessionFacts:
    """The live SSO session of the browser."""

    identity_id: int
    auth_time: dt.datetime
    amr: tuple[str, ...]
    acr: str
    mfa_time: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class InteractionFacts:
    """What happened during the interaction the request resumes from."""

    #: The person who signed in during this interaction (None: no sign-in, e.g. a second factor only).
    identity_id: int | None
    completed_at: dt.datetime | None
    factors: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PersonFacts:
    """What the person of the session could present."""

    has_second_factor: bool = False
    #: One of the person's active second-factor MIE was issued after an identity check.
    proofed: bool = False
    #: The person has an active WebAuthn MIE (able to reach ``eidas3`` with user verification).
    has_hardware_key: bool = False


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A request that no interaction can satisfy: answer the client with ``error``."""

    error: str
    description: str  # for ``error_description``: ASCII, no CR/LF (RFC 6749 §4.1.2.1)
    reason: str


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate`."""

    reasons: tuple[str, ...]
    refusal: Refusal | None = None
    #: The ``acr`` to put in the ID token when there is no reason and no refusal.
    acr: str | None = None

    @property
    def satisfied(self) -> bool:
        return not self.reasons and self.refusal is None


def reachable_acr(person: PersonFacts) -> str:
    """Return the highest ``acr`` the person can reach with the MIE they have."""
    if not person.has_second_factor:
        return "eidas1"
    amr = ["pwd", "otp", "mfa"]
    if person.has_hardware_key:
        amr += ["hwk", "pin"]
    return acr_for(amr, person.proofed)


def _login_done_here(session: SessionFacts | None, interaction: InteractionFacts | None) -> bool:
    # The login of the interaction counts only if it produced the session we are looking at: another
    # person signing in meanwhile in another tab must not inherit it.
    return (session is not None and interaction is not None and interaction.completed_at is not None
            and interaction.identity_id is not None and interaction.identity_id == session.identity_id)


def _best_acr(session_acr: str, candidates: Sequence[str]) -> str | None:
    met = [v for v in candidates if 0 <= acr_rank(v) <= acr_rank(session_acr)]
    return max(met, key=acr_rank) if met else None


def evaluate(request: RequestFacts, sensitivity: str | None, session: SessionFacts | None,
             interaction: InteractionFacts | None, person: PersonFacts | None,
             now: dt.datetime) -> Evaluation:
    """Evaluate the checks of an authorization request (OpenID Connect Core §3.1.2.3).

    ``sensitivity`` is the client's class for the built-in rule (``health-data`` requires two factors), or
    None when the access policy judges the class (:func:`with_reasons`); ``session`` the live SSO
    session or None; ``interaction`` the facts of the interaction being resumed, or None on a first
    arrival; ``person`` the facts of the session's person (None without a session).

    Returns an :class:`Evaluation`: its ``reasons`` (in :data:`REASONS` order), a ``refusal`` when the
    request can never be satisfied (``unmet_authentication_requirements`` for an essential ``acr`` out of
    reach, ``login_required`` when another person than the ``id_token_hint``'s signed in during the
    interaction), and, when satisfied, the ``acr`` to report: the highest requested level the session
    meets (essential values first, then ``acr_values``), else the session's own level.
    """
    found: set[str] = set()
    refusal: Refusal | None = None
    here = _login_done_here(session, interaction)

    if session is None:
        found.add("no_session")
    else:
        if "login" in request.prompt and not here:
            found.add("login_prompt")
        if request.max_age is not None and not here:
            if (now - session.auth_time).total_seconds() > request.max_age:
                found.add("max_age")
        if request.id_token_hint and request.hint_identity_id != session.identity_id:
            if here:
                # The person signed in, but as someone else than the client expected: asking again would
                # loop; Core §3.1.2.1 says to answer with an error.
                refusal = Refusal("login_required", "The signed-in user is not the subject of id_token_hint.",
                                  "id_token_hint_mismatch")
            else:
                found.add("id_token_hint_mismatch")

    two_factors = session is not None and "mfa" in session.amr
    if sensitivity == "health-data" and not two_factors:
        found.add("mfa_required")

    target: str | None = None
    if request.essential_acr:
        known = [v for v in request.essential_acr if acr_rank(v) >= 0]
        if not known:
            refusal = refusal or Refusal("unmet_authentication_requirements",
                                         "None of the essential acr values is supported.", "acr_unmet")
        else:
            target = min(known, key=acr_rank)
            if session is None or acr_rank(session.acr) < acr_rank(target):
                if person is None:
                    # Unknown person yet: ask for the sign-in; evaluated again once we know who it is.
                    if acr_rank(target) > 0:
                        found.add("essential_acr")
                elif acr_rank(reachable_acr(person)) >= acr_rank(target):
                    found.add("essential_acr")
                else:
                    refusal = refusal or Refusal(
                        "unmet_authentication_requirements",
                        f"The user cannot reach the essential acr {target}.", "acr_unmet")

    reasons = tuple(r for r in REASONS if r in found)
    acr: str | None = None
    if session is not None and not reasons and refusal is None:
        acr = (_best_acr(session.acr, request.essential_acr) if target is not None else None) \
            or _best_acr(session.acr, request.acr_values) or session.acr
    return Evaluation(reasons=reasons, refusal=refusal, acr=acr)


def with_reasons(evaluation: Evaluation, extra: Iterable[str]) -> Evaluation:
    """Return ``evaluation`` with the reasons ``extra`` added (known reasons only, in :data:`REASONS` order);
    a reason left means no ``acr`` to report."""
    found = set(evaluation.reasons) | (set(extra) & set(REASONS))
    reasons = tuple(r for r in REASONS if r in found)
    return dataclasses.replace(evaluation, reasons=reasons, acr=evaluation.acr if not reasons else None)


def prompt_none_error(reasons: Iterable[str]) -> str:
    """Return the OAuth error for ``prompt=none`` when ``reasons`` remain (Core §3.1.2.6):
    ``login_required`` when the person would have to sign in, ``interaction_required`` otherwise (a second
    factor, a higher level). Never ``consent_required``: there is no consent screen."""
    return "login_required" if set(reasons) & LOGIN_REASONS else "interaction_required"


def parse_prompt(raw: str | None) -> frozenset[str]:
    """Return the set of ``prompt`` values of ``raw`` (space-separated, Core §3.1.2.1).

    Raises :class:`ValueError` for an unknown value, or ``none`` combined with another value.
    """
    values = frozenset((raw or "").split())
    unknown = values - PROMPT_VALUES
    if unknown:
        raise ValueError(f"unknown prompt value {sorted(unknown)[0]!r}")
    if "none" in values and len(values) > 1:
        raise ValueError("prompt=none cannot be combined with another value")
    return values


def parse_max_age(raw: str | None) -> int | None:
    """Return ``max_age`` as a number of seconds, or None when absent (Core §3.1.2.1).

    Raises :class:`ValueError` when it is not a non-negative integer.
    """
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise ValueError("max_age must be a non-negative integer")
    return int(raw)
