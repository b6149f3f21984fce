"""The demo's past year, second step: what the people of :class:`~hospiconnect.devtools.seed_history.PastDirectory`
did — the MIE, enrollment cases, exceptions, emergency accesses and sign-ins that the trajectory counts.

* **MIE**: everyone has a password from their first day; a second factor (TOTP, security key, platform
  authenticator) is activated on a day drawn from the enrollment campaign's pace (:func:`campaign_pace`: slow
  before December 2025, the rush around the 1 January 2026 RIE deadline, the summer lull), newcomers after the
  deadline within a few weeks of their arrival. Today about three people in four hold a compliant MIE: some units
  lag far behind (:data:`LATE_UNITS`), short contracts more often than others, a few MIE were issued without an
  identity check; lost phones were revoked and replaced, keys suspended;
* enrollment cases under way, an exception in force and an expired one, two emergency accesses (one reviewed);
* **sign-ins** to the two demo applications (journal ``oidc:code:issued``, as the provider writes it), the share
  made with two factors rising with enrollment; password-only sign-ins to the DPI stop at the deadline.

:class:`History` plans the year, then plays it in the order of the dates through the services, the journal
events dated with :func:`hospiconnect.devtools.backdate.journal_dated`. The rows the MIE services stamp "now" are
backdated (``Mie.created_at``/``activated_at``/``revoked_at``/``proofing_at``, ``MieTransition.at``) —
acceptable in a demo seed only; the services that take a ``now`` (enrollment, exceptions, emergency access) are
given the past instant. The notifications the services queue for that past are dropped: they would all leave
today, dated today. The people of the past share the demo password (one argon2 hash computed once: the demo must
start in seconds), so that a person enrolled at the desk during a demonstration can sign in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections import Counter
from typing import Any, Callable

from sqlalchemy import delete, event, func, select
from sqlalchemy.orm import Session

from hospiconnect import crypto
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators import emergency
from hospiconnect.authenticators import password as pw
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators import totp
from hospiconnect.authenticators.models import (
    Mie,
    MieTransition,
    Notification,
    PasswordCredential,
    TotpCredential,
    WebAuthnCredential,
)
from hospiconnect.authenticators.webauthn import AMR_USER_VERIFIED
from hospiconnect.authorizations import services as exceptions
from hospiconnect.crypto import InstanceKeys
from hospiconnect.devtools.backdate import journal_dated
from hospiconnect.devtools.seed import DEMO_APPS, DEMO_PASSWORD, EMERGENCY_OFFICER_ROLE, OFFICER_ROLE, RSSI_ROLE, \
    _with_role
from hospiconnect.devtools.seed_history import RIE_DEADLINE, Life, PastDirectory
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import services as enrollment
from hospiconnect.enrollment import workflow as wf
from hospiconnect.ratelimit import make_throttle
from hospiconnect.settings import Settings

#: The journal actor of the past's MIE (not :data:`~hospiconnect.devtools.seed.ACTOR`: a password set by that
#: actor marks a demo account).
HISTORY_ACTOR = "system:demo_history"
#: Chance that a person has enrolled a second factor by today, and how much lower it is in the units the
#: campaign reached late and for short contracts (temp agency, vendors, students).
ENROLLED_SHARE = 0.95
LATE_UNITS = {"URGENCES": 0.55, "BLOC": 0.6, "LOGISTIQUE": 0.35}
LATE_POPULATIONS = {"interim": 0.55, "contractor": 0.5, "trainee": 0.8}
#: Share of second factors added in self-service without an identity check (hence not compliant).
NOT_PROOFED_SHARE = 0.04
#: Second-factor kinds and their weights.
FACTOR_KINDS = (("totp", 70), ("webauthn:cross-platform", 22), ("webauthn:platform", 8))
WEBAUTHN_LABELS = {"webauthn:cross-platform": "Clé de sécurité FIDO2", "webauthn:platform": "Windows Hello"}
#: Roles that use the DPI (the others sign in to the intranet only).
DPI_ROLES = frozenset({"medecin", "pharmacien", "sage_femme", "ide", "interne", "aide_soignant", "etudiant",
                       "interimaire"})
#: Chance of a sign-in per person and working day to each demo app (weekends: WEEKEND_FACTOR of it).
SIGNIN_ODDS = {"demo-dpi": 0.10, "demo-intranet": 0.05}
WEEKEND_FACTOR = 0.3
#: Share of the intranet sign-ins made with the second factor by the people who have one (single sign-on).
INTRANET_MFA_SHARE = 0.75
TOTP_LABEL = "Application d'authentification"


def _scopes(client_id: str) -> str:
    return next(app.scopes for app in DEMO_APPS if app.client_id == client_id)


def _device(factor: "Factor", participle: str) -> str:
    """« téléphone perdu », « clé de sécurité perdue »… for the reasons journaled."""
    noun, feminine = {"totp": ("téléphone", False), "webauthn:platform": ("ordinateur", False)}.get(
        factor.kind, ("clé de sécurité", True))
    return f"{noun} {participle}{'e' if feminine else ''}"


def _officer_actor(identity: Identity) -> str:
    # As the pages journal a registration officer, an RSSI or an on-call officer (web.enrollment_common).
    return f"officer:{identity.user_name}"


def campaign_pace(day: dt.date) -> float:
    """Relative pace of second-factor enrollment on ``day``: slow while it was optional, faster in December 2025
    (the deadline's campaign), a rush in the first two months of 2026, then steadier, with a summer lull."""
    if day < RIE_DEADLINE - dt.timedelta(days=31):
        pace = 0.3
    elif day < RIE_DEADLINE:
        pace = 1.5
    elif day < RIE_DEADLINE + dt.timedelta(days=59):
        pace = 3.0
    elif day.month in (7, 8):
        pace = 0.2
    elif day < dt.date(RIE_DEADLINE.year, 7, 1):
        pace = 0.8
    else:
        pace = 0.45
    return pace * (0.1 if day.weekday() >= 5 else 1.0)


@dataclasses.dataclass
class Factor:
    """A second factor of the past: its kind, the days it was active, whether an identity check preceded it."""

    kind: str
    start: dt.date
    proofed: bool
    end: dt.date | None = None
    mie: Mie | None = None

    def active_on(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or day < self.end)


@dataclasses.dataclass
class Person:
    identity: Identity
    life: Life
    roles: frozenset[str]
    factors: list[Factor] = dataclasses.field(default_factory=list)

    def factor_on(self, day: dt.date) -> Factor | None:
        return next((f for f in self.factors if f.active_on(day)), None)


class History:
    """Plans the past year's events (:meth:`plan`), then plays them in the order of their dates (:meth:`play`)."""

    def __init__(self, session: Session, keys: InstanceKeys, settings: Settings, past: PastDirectory) -> None:
        self.session, self.keys, self.settings, self.past = session, keys, settings, past
        self.rnd, self.clock, self.today = past.rnd, past.clock, past.today
        self.actions: list[tuple[dt.datetime, int, Callable[[dt.datetime], None]]] = []
        self._order = itertools.count()
        self.tally: Counter[str] = Counter()
        self.people: list[Person] = []
        self.officer = self._holder(OFFICER_ROLE)
        self.rssi = self._holder(RSSI_ROLE)
        self.on_call = self._holder(EMERGENCY_OFFICER_ROLE)
        # One hash for every person of the past (see the module's docstring).
        self.password_hash = pw.hash_password(DEMO_PASSWORD)

    def _holder(self, role: str) -> Identity | None:
        return next(iter(_with_role(self.session, role)), None)

    def later(self, at: dt.datetime, action: Callable[[dt.datetime], None]) -> None:
        self.actions.append((at, next(self._order), action))

    # -- planning ------------------------------------------------------------------------------------------

    def plan(self) -> None:
        session, rnd = self.session, self.rnd
        with_mie = set(session.scalars(select(Mie.identity_id).distinct()))  # the demo accounts
        by_id = {i.id: i for i in session.scalars(select(Identity).where(Identity.id.in_(self.past.lives)))}
        for identity_id, life in sorted(self.past.lives.items()):
            identity = by_id[identity_id]
            if identity_id in with_mie:
                continue
            person = Person(identity, life, frozenset(identity.role_names))
            self.people.append(person)
            self.later(self.clock.during(life.since), lambda at, p=person: self.give_password(p, at))
            self.plan_second_factor(person)
        enrolled = [p for p in self.people if p.factors and p.identity.status == "active"]
        not_enrolled = [p for p in self.people if not p.factors and p.identity.status == "active"]
        self.plan_incidents(enrolled)
        self.plan_cases(not_enrolled)
        self.plan_exceptions(not_enrolled)
        self.plan_emergency(enrolled)
        self.plan_signins()

    def plan_second_factor(self, person: Person) -> None:
        rnd, life = self.rnd, person.life
        identity = person.identity
        odds = ENROLLED_SHARE * LATE_POPULATIONS.get(identity.contract_type or "", 1.0)
        odds *= min((LATE_UNITS.get(u, 1.0) for u in identity.unit_codes), default=1.0)
        if rnd.random() >= odds:
            return
        last = min(self.today, (life.until or self.today + dt.timedelta(days=1)) - dt.timedelta(days=1))
        if life.since > last:
            return
        if life.since >= RIE_DEADLINE:
            # After the deadline a newcomer is enrolled within a few weeks of arriving (or not yet).
            day = life.since + dt.timedelta(days=1 + int(rnd.expovariate(1 / 12)))
            if day > last:
                return
        else:
            days = [life.since + dt.timedelta(days=n) for n in range((last - life.since).days + 1)]
            day = rnd.choices(days, weights=[campaign_pace(d) for d in days])[0]
        kind = rnd.choices([k for k, _ in FACTOR_KINDS], weights=[w for _, w in FACTOR_KINDS])[0]
        factor = Factor(kind, day, proofed=rnd.random() >= NOT_PROOFED_SHARE)
        person.factors.append(factor)
        self.later(self.clock.during(day), lambda at: self.activate(person, factor, at))

    def plan_incidents(self, enrolled: list[Person]) -> None:
        """Lost phones replaced after a new check, two replacements under way, keys suspended for a while, one
        still suspended."""
        rnd, today = self.rnd, self.today
        old = [p for p in enrolled if (today - p.factors[0].start).days > 60]
        picks = rnd.sample(old, min(len(old), 10))
        for index, person in enumerate(picks):
            factor = person.factors[0]
            if index < 5:  # lost, replaced a few days later
                lost = factor.start + dt.timedelta(days=rnd.randint(20, (today - factor.start).days - 20))
                factor.end = lost
                self.later(self.clock.during(lost), lambda at, f=factor: self.revoke(f, at))
                again = min(today, lost + dt.timedelta(days=rnd.randint(2, 15)))
                new = Factor("totp", again, proofed=True)
                person.factors.append(new)
                self.later(self.clock.during(again), lambda at, p=person, f=new: self.activate(p, f, at))
            elif index < 7:  # lost recently: a replacement case is open, the officer revoked the lost one
                lost = today - dt.timedelta(days=rnd.randint(1, 8))
                factor.end = lost
                self.later(self.clock.during(lost), lambda at, p=person, f=factor: self.open_replacement(p, f, at))
            elif index < 9:  # suspended, then found again
                off = factor.start + dt.timedelta(days=rnd.randint(10, (today - factor.start).days - 15))
                back = off + dt.timedelta(days=rnd.randint(1, 10))
                factor.end = off
                again = Factor(factor.kind, back, factor.proofed, mie=None)
                person.factors.append(again)
                self.later(self.clock.during(off), lambda at, f=factor: self.suspend(f, at))
                self.later(self.clock.during(back), lambda at, f=factor, g=again: self.reactivate(f, g, at))
            else:  # still suspended
                off = today - dt.timedelta(days=rnd.randint(2, 6))
                factor.end = off
                self.later(self.clock.during(off), lambda at, f=factor: self.suspend(f, at))

    def plan_cases(self, not_enrolled: list[Person]) -> None:
        """First-MIE enrollment cases opened at the desk in the last weeks and still open today."""
        if self.officer is None:
            return
        for person in self.rnd.sample(not_enrolled, min(len(not_enrolled), 8)):
            day = self.today - dt.timedelta(days=self.rnd.randint(0, 20))
            if day >= person.life.since:
                self.later(self.clock.during(day), lambda at, p=person: self.open_case(p, at))

    def plan_exceptions(self, not_enrolled: list[Person]) -> None:
        """One exception in force today (the temp staff of the emergency department), one over (a doctor)."""
        if self.rssi is None:
            return
        start = self.today - dt.timedelta(days=25)
        self.later(self.clock.during(start), lambda at: self.grant(
            at, ends=at + dt.timedelta(days=60), population="interim", units=("URGENCES",),
            relaxation={"max_auth_age": 86400},
            justification="Intérimaires des urgences en gardes de 24 h : une authentification par garde, le temps "
                          "de la session d'enrôlement prévue avec l'agence d'intérim."))
        doctors = [p for p in not_enrolled if "medecin" in p.roles
                   and p.life.since <= self.today - dt.timedelta(days=170)]
        if doctors:
            doctor = self.rnd.choice(doctors)
            start = self.today - dt.timedelta(days=170)
            self.later(self.clock.during(start), lambda at: self.grant(
                at, ends=at + dt.timedelta(days=90), identity=doctor.identity, relaxation={"max_auth_age": 57600},
                justification="Médecin en gardes de 16 h : une authentification par garde jusqu'à la livraison de "
                              "sa clé de sécurité."))

    def plan_emergency(self, enrolled: list[Person]) -> None:
        """Two emergency accesses (a forgotten phone or key): one reviewed by the RSSI two days later, one not yet."""
        if self.on_call is None or self.rssi is None:
            return
        carers = [p for p in enrolled if DPI_ROLES & p.roles and len(p.factors) == 1 and p.factors[0].end is None
                  and (self.today - p.factors[0].start).days > 80]
        for days_ago, reviewed in ((60, True), (3, False)):
            if not carers:
                return
            person = carers.pop(self.rnd.randrange(len(carers)))
            at = self.clock.at(self.today - dt.timedelta(days=days_ago), 3, 10)
            self.later(at, lambda at, p=person, r=reviewed: self.emergency_access(p, at, r))

    def plan_signins(self) -> None:
        rnd = self.rnd
        day = self.past.first_day
        apps = {app.client_id: app for app in DEMO_APPS}
        while day <= self.today:
            weekend = day.weekday() >= 5
            for person in self.people:
                if not person.life.active_on(day):
                    continue
                for client_id, odds in SIGNIN_ODDS.items():
                    if client_id == "demo-dpi" and not DPI_ROLES & person.roles:
                        continue
                    if rnd.random() >= odds * (WEEKEND_FACTOR if weekend else 1.0):
                        continue
                    details = self.signin(person, day, apps[client_id].sensitivity, client_id)
                    if details is not None:
                        first, last = (7, 22) if weekend or client_id == "demo-dpi" else (8, 18)
                        self.later(self.clock.during(day, first, last),
                                   lambda at, p=person, d=details: self.record_signin(p, at, d))
            day += dt.timedelta(days=1)

    def signin(self, person: Person, day: dt.date, app_class: str, client_id: str) -> dict[str, Any] | None:
        """Return the journal details of a sign-in of ``person`` on ``day``, or None when the provider would have
        refused it (one factor for health data after the deadline)."""
        factor = person.factor_on(day)
        use_factor = factor is not None and (app_class == "health-data" or self.rnd.random() < INTRANET_MFA_SHARE)
        if use_factor:
            assert factor is not None
            webauthn = factor.kind.startswith("webauthn")
            amr = sorted({"pwd", *AMR_USER_VERIFIED} if webauthn else {"pwd", "otp", "mfa"})
            acr = ("eidas3" if webauthn else "eidas2") if factor.proofed else "eidas1"
        else:
            amr, acr = ["pwd"], "eidas1"
        if app_class == "health-data" and day >= RIE_DEADLINE and acr == "eidas1":
            return None
        return {"client_id": client_id, "class": app_class, "scope": _scopes(client_id), "acr": acr, "amr": amr,
                "sid": f"{self.rnd.getrandbits(128):032x}"}

    # -- playing ---------------------------------------------------------------------------------------------

    def play(self) -> None:
        session = self.session
        last_notification = session.scalar(select(func.max(Notification.id))) or 0
        playing: list[dt.datetime] = []

        def date_new_transitions(session: Session, _context: Any, _instances: Any) -> None:
            # The MIE services stamp each transition "now": it is written with the action's date instead.
            for row in session.new:
                if isinstance(row, MieTransition):
                    row.at = playing[-1]

        event.listen(session, "before_flush", date_new_transitions)
        try:
            for at, _, action in sorted(self.actions, key=lambda a: (a[0], a[1])):
                playing.append(at)
                with journal_dated(session, at):
                    action(at)
            session.flush()
        finally:
            event.remove(session, "before_flush", date_new_transitions)
        # Messages about the past would all leave today, dated today (see the module's docstring).
        session.execute(delete(Notification).where(Notification.id > last_notification))

    def give_password(self, person: Person, at: dt.datetime) -> None:
        # What set_password does for a first password, with the hash computed once.
        session, identity = self.session, person.identity
        mie = mie_services.create_mie(session, identity, "password", actor=HISTORY_ACTOR, notify=False)
        session.add(PasswordCredential(mie_id=mie.id, hash=self.password_hash, changed_at=at))
        mie_services.transition(session, mie, "active", actor=HISTORY_ACTOR, reason="mot de passe défini")
        audit.record(session, tags.MIE_PASSWORD_CHANGED, actor=HISTORY_ACTOR, subject=identity.public_id,
                     details={"mie": mie.public_id, "first": True})
        mie.created_at = mie.activated_at = at

    def activate(self, person: Person, factor: Factor, at: dt.datetime) -> None:
        session, identity = self.session, person.identity
        if factor.kind == "totp":
            # What begin_totp does, without drawing the QR code nobody will scan (50 ms each).
            mie = mie_services.create_mie(session, identity, "totp", actor=HISTORY_ACTOR, label=TOTP_LABEL)
            session.add(TotpCredential(mie_id=mie.id, secret_enc=crypto.encrypt(
                self.keys, totp.new_seed().encode("ascii"), mie_services._totp_aad(mie.id)), last_step=None))
        else:
            mie = mie_services.create_mie(session, identity, "webauthn", actor=HISTORY_ACTOR,
                                          label=WEBAUTHN_LABELS[factor.kind], amr=list(AMR_USER_VERIFIED))
            # No private key exists for it: nobody can sign in with a key of the past.
            session.add(WebAuthnCredential(mie_id=mie.id, credential_id=f"demo-history-{mie.public_id}",
                                           public_key=b"", user_verified_at_registration=True,
                                           attachment=factor.kind.split(":", 1)[1]))
        mie_services.transition(session, mie, "active", actor=HISTORY_ACTOR,
                                reason="remis au guichet" if factor.proofed else "ajouté en libre-service")
        if factor.proofed:
            mie.proofing_method = "fcplus" if self.rnd.random() < 0.15 else "face_to_face"
            mie.proofing_at = at
        mie.created_at = mie.activated_at = at
        factor.mie = mie
        self.tally["factors"] += 1

    def revoke(self, factor: Factor, at: dt.datetime) -> None:
        assert factor.mie is not None
        mie_services.remove(self.session, factor.mie, actor=HISTORY_ACTOR, allow_last=True,
                            reason=f"{_device(factor, 'perdu')}, déclaré au guichet")
        factor.mie.revoked_at = at

    def suspend(self, factor: Factor, at: dt.datetime) -> None:
        assert factor.mie is not None
        mie_services.transition(self.session, factor.mie, "suspended", actor=HISTORY_ACTOR,
                                reason=f"{_device(factor, 'égaré')} : suspension demandée par la personne")

    def reactivate(self, factor: Factor, again: Factor, at: dt.datetime) -> None:
        assert factor.mie is not None
        mie_services.transition(self.session, factor.mie, "active", actor=HISTORY_ACTOR,
                                reason=f"{_device(factor, 'retrouvé')}")
        again.mie = factor.mie

    def open_replacement(self, person: Person, factor: Factor, at: dt.datetime) -> None:
        assert factor.mie is not None and self.officer is not None
        enrollment.open_case(self.session, person.identity, kind=wf.KIND_REPLACEMENT,
                             officer_identity_id=self.officer.id, actor=_officer_actor(self.officer),
                             lost_mie=factor.mie, reason=_device(factor, "perdu"), now=at)
        factor.mie.revoked_at = at
        self.tally["cases"] += 1

    def open_case(self, person: Person, at: dt.datetime) -> None:
        assert self.officer is not None
        enrollment.open_case(self.session, person.identity, kind=wf.KIND_FIRST_MIE,
                             officer_identity_id=self.officer.id, actor=_officer_actor(self.officer), now=at)
        self.tally["cases"] += 1

    def grant(self, at: dt.datetime, *, ends: dt.datetime, relaxation: dict[str, Any], justification: str,
              identity: Identity | None = None, population: str | None = None, units: tuple[str, ...] = ()) -> None:
        assert self.rssi is not None
        exceptions.grant_exception(self.session, self.past.policy, app_class="health-data", relaxation=relaxation,
                                   justification=justification, ends_at=ends, identity=identity,
                                   population=population, units=units, actor=_officer_actor(self.rssi), now=at)
        self.tally["exceptions"] += 1

    def emergency_access(self, person: Person, at: dt.datetime, reviewed: bool) -> None:
        """Issued by the on-call officer, used a quarter of an hour later, reviewed two days later or not yet."""
        assert self.on_call is not None and self.rssi is not None
        session, identity = self.session, person.identity
        row, code = emergency.issue_emergency_credential(
            session, self.keys, self.past.policy, identity=identity, officer=self.on_call,
            actor=_officer_actor(self.on_call), now=at,
            reason=f"{_device(person.factors[0], 'oublié').capitalize()} au domicile pendant une garde de nuit : "
                   "accès au DPI pour les prescriptions.")
        used = at + dt.timedelta(minutes=15)
        with journal_dated(session, used):
            emergency.redeem_emergency_credential(session, self.keys, user_name=identity.user_name, code=code,
                                                  client_ip="10.20.3.14", throttle=make_throttle(self.settings),
                                                  policy=self.past.policy, with_password=True, now=used)
            self.record_signin(person, used, {
                "client_id": "demo-dpi", "class": "health-data", "acr": "eidas1",
                "amr": sorted(emergency.amr_for_emergency(with_password=True)),
                "scope": _scopes("demo-dpi"), "sid": f"{self.rnd.getrandbits(128):032x}"})
        if reviewed:
            review = at + dt.timedelta(days=2, hours=7)
            with journal_dated(session, review):
                emergency.acknowledge(session, row.public_id, reviewer=self.rssi, actor=_officer_actor(self.rssi),
                                      comment="Oubli confirmé par le cadre de nuit ; accès limité aux prescriptions "
                                              "de la garde.", now=review)
        self.tally["emergency"] += 1

    def record_signin(self, person: Person, at: dt.datetime, details: dict[str, Any]) -> None:
        public_id = person.identity.public_id
        audit.record(self.session, tags.OIDC_CODE_ISSUED, actor=public_id, subject=public_id,
                     client_ip=f"10.20.{self.rnd.randint(1, 40)}.{self.rnd.randint(2, 250)}", details=details)
        self.tally["signins"] += 1


def add_history(session: Session, keys: InstanceKeys, settings: Settings, past: PastDirectory) -> str:
    """Give the people :class:`PastDirectory` created their past of MIE, enrollment, exceptions, emergency accesses
    and sign-ins (the demo accounts, which already have their MIE, are left as they are); return the French
    summary part. Works in the caller's transaction."""
    history = History(session, keys, settings, past)
    history.plan()
    history.play()
    t = history.tally
    return (f"historique de {past.days} jours : {t['factors']} seconds facteurs activés, {t['cases']} dossier(s) "
            f"d'enrôlement en cours, {t['exceptions']} dérogation(s), {t['emergency']} accès d'urgence, {t['signins']} "
            "connexions aux applications de démonstration")
