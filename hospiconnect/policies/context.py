"""What the rules are asked about, and what they answer (pure values).

* :class:`EvaluationContext` → :func:`hospiconnect.policies.rules.evaluate` → :class:`Decision`;
* :class:`IdentitySummary` → :func:`hospiconnect.policies.rules.compliance` → :class:`Compliance`.

Every answer carries :class:`Reason` values: a stable ``code`` (to journal, to count, to map to a page) and a
French ``message`` for people, with the id of the rule that imposed the failing setting when there is one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Literal

from hospiconnect.policies.acr import mie_types_from_amr
from hospiconnect.policies.relaxations import ExceptionGrant

DecisionKind = Literal["allow", "step_up", "deny"]
ALLOW: DecisionKind = "allow"
STEP_UP: DecisionKind = "step_up"
DENY: DecisionKind = "deny"

#: Every reason code, with what it means. Codes are a contract (journal, trajectory, provider pages).
REASON_CODES: dict[str, str] = {
    "unknown_class": "the application class is not declared by the policy",
    "network_unknown": "the class is restricted to some networks and the client address is absent or invalid",
    "network_refused": "the client address is outside the networks of the class",
    "not_authenticated": "no factor was used",
    "mie_type_unknown": "an MIE type used is not declared by the policy (it counts for nothing)",
    "mie_type_not_allowed": "an MIE type used does not count for this class",
    "mie_type_not_homologated": "an MIE type used is not homologated (or not yet, or no longer) and no longer counts",
    "mfa_required": "the class requires two factors and only one counts",
    "acr_insufficient": "the authentication's level is below the class's minimum",
    "no_usable_mie": "the person holds no MIE that would satisfy the class: no step-up is possible",
    "auth_too_old": "the authentication is older than the class accepts",
    "single_factor_tolerated": "information: one factor accepted under the network tolerance of a rule",
    "emergency_access": "information: an emergency credential let the person in, the class allows it that day",
    "emergency_not_allowed": "an emergency credential was used and the class does not allow emergency access",
    # compliance
    "no_mie": "the person has no MIE",
    "mie_not_active": "the MIE is not active on that day",
    "mie_single_factor": "the MIE brings one factor only",
    "mie_level_too_low": "the MIE type cannot reach the level the reference class requires",
    "mie_not_proofed": "the MIE was not issued after a verified identity check",
}

#: Values of :attr:`Decision.missing`: ``mfa`` (a second factor), ``acr:<level>`` (a higher level),
#: ``fresh_auth`` (sign in again), ``login`` (sign in at all), ``enrollment`` (obtain an MIE first).
MISSING_VALUES: tuple[str, ...] = ("mfa", "acr:eidas2", "acr:eidas3", "fresh_auth", "login", "enrollment")


@dataclasses.dataclass(frozen=True)
class Reason:
    """One reason of a decision: ``code`` (see :data:`REASON_CODES`), French ``message``, ``rule`` id or None.

    ``blocking`` is False for information that does not change the outcome (``single_factor_tolerated``).
    """

    code: str
    message: str
    rule: str | None = None
    blocking: bool = True

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "rule": self.rule, "blocking": self.blocking}


@dataclasses.dataclass(frozen=True)
class EvaluationContext:
    """One authorization to decide.

    * ``as_of``: when (a datetime; a date alone skips the age check, for "what if" questions);
    * ``app_class``: the class of the application (client) asked for; ``population``: the person's contract type;
    * ``client_ip``: the address the request came from, or None when unknown;
    * ``acr``, ``amr``, ``auth_time``: of the SSO session (the provider computes ``acr`` from ``amr`` and the
      proofing of the MIE, ``hospiconnect.idp.checks.acr_for``);
    * ``mie_types``: the MIE types used in this authentication; None: derived from ``amr`` (local types only);
    * ``available_mie_types``: the types of the person's active MIE that could be used for a step-up (the
      caller leaves out MIE that cannot reach the level, e.g. not issued after an identity check);
    * ``enrollment_possible``: the person could obtain an MIE now (then "no MIE" is a step-up to enrollment);
    * ``grants``: the exceptions (dérogations) in force for the person and the class
      (:func:`hospiconnect.authorizations.services.active_exceptions_for`), applied by
      :func:`hospiconnect.policies.relaxations.relax` to the settings of the day; those for another class or
      not in force at ``as_of`` are ignored.
    """

    as_of: dt.datetime | dt.date
    app_class: str
    acr: str | None = None
    amr: frozenset[str] = frozenset()
    auth_time: dt.datetime | None = None
    population: str | None = None
    client_ip: str | None = None
    mie_types: frozenset[str] | None = None
    available_mie_types: frozenset[str] = frozenset()
    enrollment_possible: bool = False
    grants: tuple[ExceptionGrant, ...] = ()

    def __post_init__(self) -> None:
        # Accept any iterable of strings for the sets (lists from JSON, tuples from the database).
        for name in ("amr", "available_mie_types"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))
        object.__setattr__(self, "grants", tuple(self.grants))
        if self.mie_types is not None:
            object.__setattr__(self, "mie_types", frozenset(self.mie_types))

    @property
    def used_mie_types(self) -> frozenset[str]:
        """The MIE types used in this authentication (explicit, or derived from ``amr``)."""
        return self.mie_types if self.mie_types is not None else mie_types_from_amr(self.amr)

    @property
    def two_factors(self) -> bool:
        """True when ``amr`` attests two factors (RFC 8176 ``mfa``)."""
        return "mfa" in self.amr


@dataclasses.dataclass(frozen=True)
class Decision:
    """The answer for one :class:`EvaluationContext`.

    * ``kind``: ``allow``, ``step_up`` (the person can satisfy ``missing`` now) or ``deny``;
    * ``missing``: what a step-up must bring (:data:`MISSING_VALUES`);
    * ``reasons``: blocking reasons first, then information;
    * ``rules``: ids of the rules in force for this class and population that day;
    * ``candidates``: MIE types of the person that would satisfy a step-up, best first;
    * ``applied_grants``: ids of the exceptions without which the decision would have been stricter (a smallest
      set of the grants of the context that gives this decision; empty when they change nothing).
    """

    kind: DecisionKind
    missing: frozenset[str] = frozenset()
    reasons: tuple[Reason, ...] = ()
    rules: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()
    app_class: str = ""
    day: dt.date | None = None
    applied_grants: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.kind == ALLOW

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes of the reasons, in order."""
        return tuple(r.code for r in self.reasons)

    def as_json(self) -> dict[str, Any]:
        """Return the decision as JSON-ready values (for the journal and ``--json``)."""
        return {"kind": self.kind, "missing": sorted(self.missing), "reasons": [r.as_json() for r in self.reasons],
                "rules": list(self.rules), "candidates": list(self.candidates), "class": self.app_class,
                "day": self.day.isoformat() if self.day else None, "applied_grants": list(self.applied_grants)}


@dataclasses.dataclass(frozen=True)
class MieSummary:
    """One MIE of a person, as the compliance rule needs it.

    ``active_from``: activation (None: never activated); ``active_until``: suspension or revocation (None: still
    active); ``proofing_method``: the identity check that preceded its issuance (``face_to_face``, ``fcplus``)
    or None; ``proofed_at``: when.
    """

    type: str
    active_from: dt.date | dt.datetime | None
    active_until: dt.date | dt.datetime | None = None
    proofing_method: str | None = None
    proofed_at: dt.date | dt.datetime | None = None
    label: str = ""


@dataclasses.dataclass(frozen=True)
class IdentitySummary:
    """A person's MIE (all of them, active or not: the rule decides per day) and population."""

    mies: tuple[MieSummary, ...] = ()
    population: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mies", tuple(self.mies))


@dataclasses.dataclass(frozen=True)
class Compliance:
    """Whether a person holds a compliant MIE on ``day``: the first MIE found that is (``mie``), or, when none
    is, one reason per MIE (``reasons``); ``rules``: the rules in force for the reference class that day."""

    compliant: bool
    day: dt.date
    mie: MieSummary | None = None
    reasons: tuple[Reason, ...] = ()
    rules: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"compliant": self.compliant, "day": self.day.isoformat(),
                "mie": self.mie.type if self.mie else None,
                "reasons": [r.as_json() for r in self.reasons], "rules": list(self.rules)}
