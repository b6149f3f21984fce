"""HospiConnect as a delegated local identity provider of Pro Santé Connect (the ``psc`` client profile).

In the HospiConnect target architecture (DOMAIN.md « Pro Santé Connect », « Étape 4 »), PSC may delegate the
authentication of a professional to the establishment's identity provider: PSC is then registered here as an
OpenID Connect client with the ``psc`` profile (``hospiconnect client add --profile psc``), and the ID token
(and userinfo) issued to it carry, besides the standard claims:

* ``SubjectNameID`` and ``preferred_username``: the national identifier, "8" followed by the 11-digit RPPS
  number (the form PSC itself uses, hospiconnect.enrollment.psc);
* ``given_name``, ``family_name`` (the name the person uses, as for the ``profile`` scope);
* ``SubjectOrganization``: the name of the person's establishment (the first of their FINESS numbers known
  to the directory with a name), else ``HOSPICONNECT_ESTABLISHMENT_NAME``;
* ``amr`` (ID token only): how the person authenticated, mapped from the **MIE types used in the session**
  (``password``, ``totp``, ``webauthn``, as :func:`hospiconnect.policies.mie_types_from_amr` reads them) by
  one table, :func:`load_amr_mapping` — the shipped :data:`DEFAULT_AMR_BY_MIE_TYPE`, or the YAML/JSON file
  named by ``HOSPICONNECT_PSC_DELEGATION_AMR_FILE``.

**The shipped amr values are an assumption.** The ANS has not published (to our knowledge) the list of ``amr``
values it accepts from a delegated identity provider. The defaults follow RFC 8176 and the sets seen in PSC's
own tokens (DOMAIN.md: ``["pwd","otp","mfa"]``-like for app-based MIE, ``["hwk","pin","mfa"]``-like for
cards); replace them with the file above once the ANS publishes its list. No other source is claimed.

**Who is delegated** (:func:`decide`, pure; :func:`assess` gathers its facts): only a person linked to a
national identity (an RPPS number: :func:`national_rpps`) whose session proved two factors with an MIE that is
compliant (:func:`hospiconnect.policies.is_compliant`, the one definition, on the MIE types used) and whose
types all have an ``amr`` in the mapping; never an emergency (bris de glace) session. A session with one factor,
for a person who holds a compliant MIE, is stepped up (``mfa_required``); every other case is refused with a
reason code (``access_denied`` to PSC, a French page to a person who is on a HospiConnect page, journaled by
hospiconnect.idp.oidc with the reason).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import types
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from hospiconnect.authenticators.models import Mie
from hospiconnect.directory.models import Establishment, Identity
from hospiconnect.enrollment import national
from hospiconnect.idp import claims as claims_mod
from hospiconnect.idp.models import Client, SsoSession
from hospiconnect.policies import IdentitySummary, MieSummary, Policy, is_compliant, mie_types_from_amr
from hospiconnect.policies.acr import MIE_TYPE_NAMES
from hospiconnect.policies.rules import EMERGENCY_AMR
from hospiconnect.settings import Settings

#: The client profile of Pro Santé Connect (hospiconnect.idp.models.Client.profile).
PROFILE = "psc"
#: The claims profiles a client may be registered with.
PROFILES: tuple[str, ...] = (PROFILE,)

#: MIE types that bring the second factor (hospiconnect.idp.policy_gate.SECOND_FACTOR_TYPES).
SECOND_FACTOR_TYPES: tuple[str, ...] = ("totp", "webauthn")

#: MIE type used in the session → ``amr`` values reported to PSC. ASSUMPTION pending the ANS's published list
#: of allowed values (see the module's docstring): RFC 8176 names, shaped like the sets PSC itself reports.
#: Configurable with ``HOSPICONNECT_PSC_DELEGATION_AMR_FILE``; the README documents this table.
DEFAULT_AMR_BY_MIE_TYPE: Mapping[str, tuple[str, ...]] = types.MappingProxyType({
    "password": ("pwd",),
    "totp": ("otp", "mfa"),
    "webauthn": ("hwk", "mfa"),
})

_AMR_VALUE = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")
_RPPS = re.compile(r"^\d{11}$")
MAX_MAPPING_FILE = 64 * 1024

# Reason codes of a refusal (journaled in ``oidc:authorize:refused``).
NOT_PAIRED = "psc_not_paired"
NO_COMPLIANT_MIE = "psc_no_compliant_mie"
MIE_NOT_COMPLIANT = "psc_mie_not_compliant"
AMR_UNMAPPED = "psc_amr_unmapped"
EMERGENCY = "psc_emergency_access"
NATIONAL_SESSION = "psc_national_session"
CONFIGURATION_INVALID = "psc_configuration_invalid"

_MESSAGES_FR = {
    NOT_PAIRED: "Votre compte n'est pas relié à votre identité nationale de professionnel de santé (RPPS) : "
                "l'établissement ne peut pas vous connecter à Pro Santé Connect. Reliez votre compte (appairage) "
                "ou connectez-vous à Pro Santé Connect avec votre carte CPS ou l'application e-CPS.",
    NO_COMPLIANT_MIE: "Vous ne disposez d'aucun moyen d'identification conforme (deux facteurs) : l'établissement "
                      "ne peut pas vous connecter à Pro Santé Connect. Adressez-vous au support informatique.",
    MIE_NOT_COMPLIANT: "Le moyen d'identification utilisé pour cette connexion n'est pas conforme : l'établissement "
                       "ne peut pas vous connecter à Pro Santé Connect avec lui.",
    AMR_UNMAPPED: "Le moyen d'identification utilisé n'est pas accepté pour la connexion à Pro Santé Connect "
                  "par l'établissement.",
    EMERGENCY: "Un accès d'urgence (bris de glace) ne permet pas de se connecter à Pro Santé Connect.",
    NATIONAL_SESSION: "Vous êtes connecté(e) à l'établissement avec votre carte CPS ou l'application e-CPS, par "
                      "Pro Santé Connect : connectez-vous à Pro Santé Connect directement avec ce même moyen.",
    CONFIGURATION_INVALID: "La connexion à Pro Santé Connect par l'établissement est momentanément indisponible. "
                           "Prévenez le support informatique.",
}
_DESCRIPTIONS = {
    NOT_PAIRED: "Delegation refused: the identity is not linked to an RPPS number.",
    NO_COMPLIANT_MIE: "Delegation refused: the person holds no compliant two-factor MIE.",
    MIE_NOT_COMPLIANT: "Delegation refused: the MIE used in this session is not compliant.",
    AMR_UNMAPPED: "Delegation refused: the MIE used has no amr value agreed for PSC.",
    EMERGENCY: "Delegation refused: emergency access is never delegated.",
    NATIONAL_SESSION: "Delegation refused: the session was itself opened through Pro Sante Connect.",
    CONFIGURATION_INVALID: "Delegation unavailable: the amr mapping file is invalid.",
}


class DelegationConfigError(ValueError):
    """The amr mapping file cannot be used; ``str(error)`` is a French message naming the file."""


# --- the amr mapping ----------------------------------------------------------------------------------------

def parse_amr_mapping(data: object, *, source: str = "correspondance amr") -> dict[str, tuple[str, ...]]:
    """Return ``data`` as a mapping MIE type → amr values (pure).

    ``data`` is an object whose keys are MIE types the product knows (:data:`MIE_TYPE_NAMES`) and whose values
    are non-empty lists of amr values (1 to 32 characters among letters, digits, ``_ . : -``). Raises
    :class:`DelegationConfigError`.
    """
    if isinstance(data, dict) and set(data) == {"amr"}:
        data = data["amr"]  # the file may wrap the table in "amr:"
    if not isinstance(data, dict) or not data:
        raise DelegationConfigError(f"{source} : un objet non vide « type de MIE: [valeurs amr] » est attendu.")
    mapping: dict[str, tuple[str, ...]] = {}
    for mie_type, values in data.items():
        if mie_type not in MIE_TYPE_NAMES:
            raise DelegationConfigError(f"{source} : type de MIE inconnu « {mie_type} » (connus : "
                                        f"{', '.join(MIE_TYPE_NAMES)}).")
        if not isinstance(values, list) or not values:
            raise DelegationConfigError(f"{source} : « {mie_type} » doit recevoir une liste non vide de valeurs amr.")
        for value in values:
            if not isinstance(value, str) or not _AMR_VALUE.match(value):
                raise DelegationConfigError(f"{source} : valeur amr invalide pour « {mie_type} » : {value!r}.")
        mapping[mie_type] = tuple(dict.fromkeys(values))
    return mapping


_cache: dict[Path, tuple[tuple[int, int], Mapping[str, tuple[str, ...]]]] = {}


def load_amr_mapping(path: Path | None) -> Mapping[str, tuple[str, ...]]:
    """Return the mapping of ``path`` (YAML or JSON), or :data:`DEFAULT_AMR_BY_MIE_TYPE` when ``path`` is None.

    The file is read again when it changes (size or modification time). Raises :class:`DelegationConfigError`
    for an unreadable or invalid file: :func:`hospiconnect.create_app` loads it at start-up, so an invalid file
    stops the start rather than a token request.
    """
    if path is None:
        return DEFAULT_AMR_BY_MIE_TYPE
    try:
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        if stat.st_size > MAX_MAPPING_FILE:
            raise DelegationConfigError(f"{path} : fichier trop volumineux.")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DelegationConfigError(f"HOSPICONNECT_PSC_DELEGATION_AMR_FILE : fichier illisible ({path}).") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DelegationConfigError(f"{path} : ni YAML ni JSON valide.") from exc
    mapping = types.MappingProxyType(parse_amr_mapping(data, source=str(path)))
    _cache[path] = (stamp, mapping)
    return mapping


def delegated_amr(session_amr: Iterable[str], mapping: Mapping[str, Iterable[str]]) -> list[str]:
    """Return the ``amr`` reported to PSC for a session whose own ``amr`` is ``session_amr`` (pure): the
    values mapped from each MIE type the session used, sorted, without duplicates. A type without a mapping
    contributes nothing (:func:`decide` refuses delegation when a second-factor type is unmapped)."""
    used = mie_types_from_amr(session_amr)
    return sorted({value for mie_type in used for value in mapping.get(mie_type, ())})


# --- the national identity ----------------------------------------------------------------------------------

def subject_name_id(rpps: str) -> str:
    """Return PSC's national identifier of an RPPS number: "8" followed by the 11 digits."""
    if not _RPPS.match(rpps or ""):
        raise ValueError("an RPPS number has 11 digits")
    return "8" + rpps


def national_rpps(session: Session, identity: Identity) -> str | None:
    """Return the RPPS number of the national identity ``identity`` is linked to (a live pairing with Pro Santé
    Connect, :func:`hospiconnect.enrollment.national.live_link`), or None: a person not paired is not delegated,
    whatever the directory says."""
    link = national.live_link(session, identity)
    rpps = link.rpps if link is not None else None
    return rpps if rpps and _RPPS.match(rpps) else None


def organization_name(session: Session, settings: Settings, identity: Identity) -> str:
    """Return ``SubjectOrganization``: the name of the person's first establishment the directory names
    (by FINESS order), else the establishment name of the settings."""
    finess = sorted(identity.finess_numbers)
    if finess:
        rows = session.execute(select(Establishment.finess, Establishment.name)
                               .where(Establishment.finess.in_(finess))).all()
        names = {row.finess: row.name for row in rows}
        for number in finess:
            if names.get(number):
                return names[number]
    return settings.establishment_name


def person_claims(session: Session, settings: Settings, identity: Identity) -> dict[str, Any]:
    """Return the claims of the ``psc`` profile (ID token and userinfo), ``amr`` aside. Without a national
    identity (unpaired since the token was issued), ``SubjectNameID`` and ``preferred_username`` are left out."""
    body: dict[str, Any] = {"given_name": identity.given_names, "family_name": claims_mod.family_name(identity),
                            "SubjectOrganization": organization_name(session, settings, identity)}
    rpps = national_rpps(session, identity)
    if rpps is not None:
        national_id = subject_name_id(rpps)
        body.update(SubjectNameID=national_id, preferred_username=national_id)
    return body


def is_psc(client: Client | None) -> bool:
    return client is not None and client.profile == PROFILE


# --- who is delegated ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Verdict:
    """The answer of :func:`decide`: delegate (``allowed``), ask a second factor (``step_up``), or refuse
    (``reason``, with ``description``: ASCII for ``error_description``, and ``message``: French)."""

    allowed: bool = False
    step_up: bool = False
    reason: str | None = None

    @property
    def description(self) -> str:
        return _DESCRIPTIONS.get(self.reason or "", "Delegation refused.")

    @property
    def message(self) -> str:
        return _MESSAGES_FR.get(self.reason or "", "")


def decide(*, rpps: str | None, session_amr: Iterable[str], holds_compliant_mie: bool, used_mie_compliant: bool,
           mapping: Mapping[str, Iterable[str]]) -> Verdict:
    """Decide whether a session is delegated to PSC (pure).

    ``holds_compliant_mie``: the person holds a compliant MIE; ``used_mie_compliant``: the second-factor MIE
    types used in the session are compliant (:func:`assess` asks :func:`hospiconnect.policies.is_compliant`).
    """
    amr = frozenset(session_amr)
    if rpps is None:
        return Verdict(reason=NOT_PAIRED)
    if EMERGENCY_AMR in amr:
        return Verdict(reason=EMERGENCY)
    used = mie_types_from_amr(amr) & set(SECOND_FACTOR_TYPES)
    if "mfa" not in amr or not used:
        return Verdict(step_up=True) if holds_compliant_mie else Verdict(reason=NO_COMPLIANT_MIE)
    if not used_mie_compliant:
        return Verdict(reason=MIE_NOT_COMPLIANT)
    if any(not tuple(mapping.get(t, ())) for t in used):
        return Verdict(reason=AMR_UNMAPPED)
    return Verdict(allowed=True)


def _summary(mie: Mie) -> MieSummary:
    return MieSummary(type=mie.type, active_from=mie.activated_at, proofing_method=mie.proofing_method,
                      proofed_at=mie.proofing_at, label=mie.label or mie.type)


def assess(session: Session, settings: Settings, policy: Policy, sso: SsoSession, *,
           now: dt.datetime) -> Verdict:
    """Gather the facts of :func:`decide` for the person of ``sso`` and return its verdict.

    Raises :class:`DelegationConfigError` when the mapping file became invalid (the caller refuses)."""
    mapping = load_amr_mapping(settings.psc_delegation_amr_file)
    if sso.national_mie:
        # Opened through PSC itself: its amr is PSC's, not the local factors the mapping speaks of.
        return Verdict(reason=NATIONAL_SESSION)
    identity = session.get(Identity, sso.identity_id)
    if identity is None:
        return Verdict(reason=NOT_PAIRED)
    active = list(session.scalars(select(Mie).where(Mie.identity_id == identity.id, Mie.status == "active")))
    population = identity.contract_type
    everything = IdentitySummary(tuple(_summary(m) for m in active), population)
    used_types = mie_types_from_amr(sso.amr) & set(SECOND_FACTOR_TYPES)
    used = IdentitySummary(tuple(_summary(m) for m in active if m.type in used_types), population)
    return decide(rpps=national_rpps(session, identity), session_amr=sso.amr,
                  holds_compliant_mie=is_compliant(policy, everything, now),
                  used_mie_compliant=bool(used_types) and is_compliant(policy, used, now), mapping=mapping)
