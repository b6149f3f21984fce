"""The RSSI's trajectory pages (/securite/trajectoire) through the Flask test client: the guard, the dashboard's
figures against what the snapshot stored, the charts (SVG with their own CSP), the people list and its CSV, the
series exports, the printable report and the targets form.

The data set is small and hand-built: six people of two pôles, MIE activated on known days, one open enrollment
case, one exception, three sign-ins; 21 days rebuilt by the backfill, today's included (see ``cast``).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import re
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import func, select

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie, MieTransition
from hospiconnect.authorizations import services as exceptions
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity, OrgUnit
from hospiconnect.enrollment.models import EnrollmentCase, EnrollmentTransition, NationalLink
from hospiconnect.policies import DEFAULT_POLICY_PATH, load_policy
from hospiconnect.trajectory import exports, services
from hospiconnect.trajectory.models import TrajectoryPersonStatus, TrajectorySnapshot, TrajectoryTarget
from hospiconnect.trajectory.snapshots import backfill
from hospiconnect.web import trajectory_pages
from hospiconnect.web.trajectory_charts import SVG_CSP
from tests.factories import create_identity
from tests.functional.test_security_pages import sign_in, sign_in_again, text_of, token_of

POLICY = load_policy(DEFAULT_POLICY_PATH)
UTC = dt.timezone.utc
SVG_NS = "{http://www.w3.org/2000/svg}"
BASE = "/securite/trajectoire"
PAGES = [BASE, f"{BASE}/graphiques/couverture.svg", f"{BASE}/graphiques/repartition.svg",
         f"{BASE}/graphiques/appairage.svg", f"{BASE}/personnes",
         f"{BASE}/personnes.csv", f"{BASE}/series.csv", f"{BASE}/series.json", f"{BASE}/rapport", f"{BASE}/cibles"]
HISTORY_DAYS = 21


@dataclasses.dataclass(frozen=True)
class Cast:
    today: dt.date
    people: dict[str, Identity]

    def day(self, days_ago: int) -> dt.date:
        return self.today - dt.timedelta(days=days_ago)


def noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(10), tzinfo=UTC)  # noon in Paris: the same local day


def give_mie(session, identity, mie_type: str, *, on: dt.date, proofed: bool) -> Mie:  # type: ignore[no-untyped-def]
    """An active MIE activated on ``on`` (after an identity check when ``proofed``), as enrollment leaves it."""
    when = noon(on)
    mie = Mie(identity_id=identity.id, type=mie_type, label=mie_type, activated_at=when, status="active",
              proofing_method="face_to_face" if proofed else None, proofing_at=when if proofed else None)
    session.add(mie)
    session.flush()
    session.add(MieTransition(mie_id=mie.id, from_status="pending", to_status="active", at=when, actor="test"))
    session.commit()
    return mie


def stored(session, day: dt.date) -> dict[tuple[str, str, str], int]:  # type: ignore[no-untyped-def]
    rows = session.execute(select(TrajectorySnapshot.indicator, TrajectorySnapshot.dimension,
                                  TrajectorySnapshot.value, TrajectorySnapshot.count)
                           .where(TrajectorySnapshot.day == day)).all()
    return {(i, d, v): c for i, d, v, c in rows}


def plain(response) -> str:  # type: ignore[no-untyped-def]
    """The page's text with HTML entities decoded and the French non-breaking spaces made plain."""
    return text_of(response).replace("\u00a0", " ").replace("\u202f", " ")


def figure(page: str, key: str) -> str:
    match = re.search(rf'id="chiffre-{key}"[^>]*>\s*<span class="traj-value">([^<]*)</span>', page)
    assert match, key
    return match.group(1)


def svg_root(response):  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "image/svg+xml"
    assert response.headers["Content-Security-Policy"] == SVG_CSP == "default-src 'none'; style-src 'unsafe-inline'"
    root = ET.fromstring(response.get_data())
    assert root.tag == f"{SVG_NS}svg" and int(root.get("width")) > 0 and int(root.get("height")) > 0
    assert root.find(f".//{SVG_NS}script") is None and b"<script" not in response.get_data()
    return root


def svg_text(root) -> str:  # type: ignore[no-untyped-def]
    return " ".join("".join(node.itertext()) for node in root.iter(f"{SVG_NS}text"))


def csv_rows(response) -> list[list[str]]:  # type: ignore[no-untyped-def]
    body = response.get_data(as_text=True)
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:]), delimiter=";"))


def count(session, model) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model)) or 0


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture()
def cast(session) -> Cast:  # type: ignore[no-untyped-def]
    """Six people, 21 days of history (day 0 is today):

    - alice (CDI, RPPS, CARDIO): a password, and a TOTP after an identity check from 10 days ago — compliant;
    - bruno (interim, URG): a password only — non-compliant;
    - chloe (trainee, CARDIO): no MIE, an enrollment case open since 3 days ago — pending;
    - david (CDI, URG): a security key after an identity check from 5 days ago — compliant;
    - emma (interim, URG): a password, an exception of the health-data class from today — exempt;
    - fanny (CDD, CARDIO): nothing — non-compliant.
    CARDIO is in the pôle POLE-MED, URG in POLE-URG. Three sign-ins to the DPI today, two with two factors.
    Pairings with Pro Santé Connect: bruno from 15 to 10 days ago (then unlinked), alice since 7 days ago.
    """
    now = utcnow()
    today = POLICY.local_day(now)
    pole_med = OrgUnit(code="POLE-MED", name="Pôle médecine", kind="pole")
    pole_urg = OrgUnit(code="POLE-URG", name="Pôle urgences", kind="pole")
    session.add_all([pole_med, pole_urg])
    session.flush()
    session.add_all([OrgUnit(code="CARDIO", name="Cardiologie", parent_id=pole_med.id),
                     OrgUnit(code="URG", name="Urgences", parent_id=pole_urg.id)])
    session.commit()
    p = {
        "alice": create_identity(session, birth_family_name="Arnaud", given_names="Alice", with_rpps=True,
                                 units="CARDIO"),
        "bruno": create_identity(session, birth_family_name="Blanc", given_names="Bruno", contract_type="interim",
                                 units="URG"),
        "chloe": create_identity(session, birth_family_name="Collin", given_names="Chloé", contract_type="trainee",
                                 units="CARDIO"),
        "david": create_identity(session, birth_family_name="Durand", given_names="David", units="URG"),
        "emma": create_identity(session, birth_family_name="Etienne", given_names="Emma", contract_type="interim",
                                units="URG"),
        "fanny": create_identity(session, birth_family_name="Fabre", given_names="Fanny", contract_type="fixed_term",
                                 units="CARDIO"),
    }
    long_ago = today - dt.timedelta(days=400)
    give_mie(session, p["alice"], "password", on=long_ago, proofed=False)
    give_mie(session, p["alice"], "totp", on=today - dt.timedelta(days=10), proofed=True)
    give_mie(session, p["bruno"], "password", on=long_ago, proofed=False)
    give_mie(session, p["david"], "webauthn", on=today - dt.timedelta(days=5), proofed=True)
    give_mie(session, p["emma"], "password", on=long_ago, proofed=False)
    opened = noon(today - dt.timedelta(days=3))
    case = EnrollmentCase(identity_id=p["chloe"].id, kind="first_mie", state="opened", opened_by="test",
                          opened_at=opened, expires_at=opened + dt.timedelta(days=30))
    session.add(case)
    session.flush()
    session.add(EnrollmentTransition(case_id=case.id, event="open", from_state=None, to_state="opened", at=opened,
                                     actor="test"))
    exceptions.grant_exception(session, POLICY, app_class="health-data", relaxation={"max_auth_age": 86400},
                               justification="Clé de sécurité en commande", identity=p["emma"],
                               ends_at=now + dt.timedelta(days=3), actor="rssi", now=now)
    session.add_all([
        NationalLink(identity_id=p["bruno"].id, issuer="https://psc.example", sub="psc-bruno", rpps=None,
                     method="names", linked_at=noon(today - dt.timedelta(days=15)), linked_by="bblanc",
                     unlinked_at=noon(today - dt.timedelta(days=10)), unlinked_by="agent", unlink_reason="erreur"),
        NationalLink(identity_id=p["alice"].id, issuer="https://psc.example", sub="psc-alice", rpps=p["alice"].rpps,
                     method="rpps", linked_at=noon(today - dt.timedelta(days=7)), linked_by="aarnaud")])
    for who, amr, acr in (("alice", ["mfa", "otp", "pwd"], "eidas2"), ("david", ["mfa", "hwk"], "eidas2"),
                          ("bruno", ["pwd"], "eidas1")):
        audit.record(session, tags.OIDC_CODE_ISSUED, actor=p[who].public_id, subject=p[who].public_id,
                     details={"client_id": "dpi", "class": "health-data", "acr": acr, "amr": amr, "sid": "s",
                              "scope": "openid"})
    session.commit()
    backfill(session, POLICY, today - dt.timedelta(days=HISTORY_DAYS - 1), today, now=now)
    session.commit()
    return Cast(today, p)


@pytest.fixture()
def rssi(session):  # type: ignore[no-untyped-def]
    return create_identity(session, roles="rssi", birth_family_name="Securite")


@pytest.fixture()
def rssi_client(app, rt, cast, rssi):  # type: ignore[no-untyped-def]
    """The RSSI, created after the history (so not counted in it), signed in with two factors a moment ago."""
    client = app.test_client()
    sign_in(client, rt, rssi)
    return client


# --- who may come in ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", PAGES)
def test_the_guard_of_the_rssi_pages_applies(app, rt, session, rssi, url):
    client = app.test_client()
    response = client.get(url)
    assert response.status_code == 401 and "Connexion requise" in text_of(response)
    assert response.headers["Cache-Control"] == "no-store"
    sign_in(client, rt, create_identity(session, roles="emergency_officer|ide", birth_family_name="Astreinte"))
    assert client.get(url).status_code == 403
    sign_in(client, rt, rssi, minutes_ago=rt.settings.recent_mfa_minutes + 5)
    assert "second facteur" in text_of(client.get(url))
    sign_in(client, rt, rssi, mfa=False)
    assert client.get(url).status_code == 403
    sign_in_again(client, rt, rssi, amr=["pwd"], recovery_only=True)
    assert client.get(url).status_code == 403
    sign_in_again(client, rt, rssi, amr=["emergency", "pwd"])
    assert "accès d'urgence : il ne sert qu'aux soins" in text_of(client.get(url))
    sign_in(client, rt, rssi)
    assert client.get(url).status_code == 200


def test_adding_a_target_without_a_session_is_refused_and_changes_nothing(client, session):
    token = token_of(client, "/activation")
    response = client.post(f"{BASE}/cibles", data={"csrf_token": token, "label": "Objectif", "percent": "80",
                                                   "due": "2099-01-01"})
    assert response.status_code == 401
    assert count(session, TrajectoryTarget) == 0


def test_the_security_index_links_to_the_trajectory(app, rt, rssi):
    client = app.test_client()
    sign_in(client, rt, rssi)
    assert f'href="{BASE}"' in client.get("/securite").get_data(as_text=True)


# --- before the first snapshot --------------------------------------------------------------------------------


def test_without_a_snapshot_the_pages_say_how_to_take_one(app, rt, rssi):
    client = app.test_client()
    sign_in(client, rt, rssi)
    page = text_of(client.get(BASE))
    assert "Aucun relevé pour l'instant" in page
    for command in ("hospiconnect trajectory snapshot", "hospiconnect jobs run",
                    "hospiconnect trajectory backfill --from"):
        assert command in page
    assert "Aucun relevé" in svg_text(svg_root(client.get(f"{BASE}/graphiques/couverture.svg")))
    svg_root(client.get(f"{BASE}/graphiques/repartition.svg?dimension=unit"))
    people = client.get(f"{BASE}/personnes")
    assert people.status_code == 200 and "Aucun relevé pour l'instant" in text_of(people)
    assert csv_rows(client.get(f"{BASE}/personnes.csv")) == [list(exports.PEOPLE_COLUMNS)]
    assert csv_rows(client.get(f"{BASE}/series.csv")) == [list(exports.SERIES_COLUMNS)]
    assert json.loads(client.get(f"{BASE}/series.json").get_data()) == []
    report = client.get(f"{BASE}/rapport")
    assert report.status_code == 200 and "Aucun relevé n'a encore été pris" in text_of(report)


# --- the dashboard --------------------------------------------------------------------------------------------


def test_the_dashboard_shows_what_the_snapshot_stored(rssi_client, session, cast):
    response = rssi_client.get(BASE)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = plain(response)
    counts = stored(session, cast.today)
    at_all = {i: c for (i, d, _v), c in counts.items() if d == "all"}
    # Hand-computed, and equal to what was stored.
    expected = {"active": 6, "compliant": 2, "pending": 1, "exempt": 1, "non_compliant": 2, "proofed": 2,
                "password_only": 2, "rpps_linked": 1, "psc_paired": 1, "exceptions_active": 1,
                "emergency_unreviewed": 0}
    assert {k: at_all[k] for k in expected} == expected
    for key in ("active", "pending", "exempt", "non_compliant", "proofed", "password_only", "rpps_linked",
                "psc_paired", "exceptions_active", "emergency_unreviewed"):
        assert figure(page, key) == str(at_all[key]), key
    assert figure(page, "compliant") == "33,3 %"  # 2 of 6
    assert figure(page, "signins_mfa") == "66,7 %"  # 2 of 3 sign-ins to the DPI
    assert f"Chiffres du relevé du {cast.today:%d/%m/%Y}" in page
    # Each figure has its definition, on hover and expandable, and the methodology is on the page.
    assert page.count('<details class="traj-definition">') == 12
    assert "16,7 % des identités actives" in page[page.index('id="chiffre-psc_paired"'):]  # 1 of 6
    assert 'title="Identités dont le statut dans l\'annuaire est « active »' in page
    assert 'href="#a-propos"' in page and 'id="a-propos"' in page
    # Charts as images with their alternative text, and their numbers in tables.
    assert f'src="{BASE}/graphiques/couverture.svg"' in page
    assert f'src="{BASE}/graphiques/repartition.svg?dimension=contract_type"' in page
    assert f'src="{BASE}/graphiques/repartition.svg?dimension=pole"' in page
    assert re.search(r'<img [^>]*alt="Courbe de la part des identités actives avec un MIE conforme', page)
    first = cast.day(HISTORY_DAYS - 1)
    assert f"du {first:%d/%m/%Y} (0 %) au {cast.today:%d/%m/%Y} (33,3 %)" in page
    assert "Données du graphique (21 relevés)" in page
    # Pairing with Pro Santé Connect over time: bruno 15 to 11 days ago, nobody, then alice from 7 days ago.
    assert f'src="{BASE}/graphiques/appairage.svg"' in page
    assert re.search(r'<img [^>]*alt="Courbe de la part des identités actives associées à Pro Santé Connect', page)
    assert f"du {first:%d/%m/%Y} (0 %) au {cast.today:%d/%m/%Y} (16,7 %)" in page
    assert "Données : identité nationale (21 relevés)" in page
    assert f'href="{BASE}/personnes?statut=tous&amp;rpps=oui&amp;psc=non"' in response.get_data(as_text=True)
    # The projection and its method: 0 % → 33,3 % in 3 weeks, a rising line.
    assert "Au rythme actuel" in page and "droite des moindres carrés sur les 8 dernières semaines (21 points)" in page
    # Breakdowns (the pôle chart, since the directory has pôles), largest gaps with links to the list.
    assert "Pôle médecine" in page and "Pôle urgences" in page and "Intérim" in page
    gaps = page[page.index('id="titre-ecarts"'):page.index('id="titre-objectifs"')]
    assert gaps.index("Cardiologie") < gaps.index("Urgences")  # 2 to equip in each: by code
    assert f'href="{BASE}/personnes?unite=CARDIO"' in gaps
    # The policy's targets with their gap.
    assert "Tous les professionnels accédant aux données de santé disposent d'un MIE conforme" in page
    assert "66,7&nbsp;pt" in response.get_data(as_text=True)


def test_the_pairing_chart_and_its_days(rssi_client, session, cast):
    root = svg_root(rssi_client.get(f"{BASE}/graphiques/appairage.svg"))
    text = svg_text(root)
    assert "Part associée à Pro Santé Connect (%)" in text and "Projection" not in text
    [line] = [g.find(f"{SVG_NS}path").get("d") for g in root.iter(f"{SVG_NS}g")
              if (g.get("class") or "").startswith("series ") and g.find(f"{SVG_NS}path") is not None]
    assert len(re.findall(r"[\d.]+ [\d.]+", line)) == HISTORY_DAYS
    expected = [(cast.day(n), 1 if 11 <= n <= 15 or n <= 7 else 0) for n in range(HISTORY_DAYS - 1, -1, -1)]
    assert [(p.day, p.compliant, p.active) for p in services.pairing(session, cast.day(HISTORY_DAYS - 1), cast.today)
            ] == [(d, n, 6) for d, n in expected]
    interim = svg_text(svg_root(rssi_client.get(f"{BASE}/graphiques/appairage.svg?dimension=contract_type"
                                                "&valeur=interim&jours=7")))
    assert "Intérim" in interim
    for bad in ("appairage.svg?dimension=nope", "appairage.svg?jours=0", "appairage.svg?dimension=unit"):
        assert rssi_client.get(f"{BASE}/graphiques/{bad}").status_code == 400, bad
    # Days stored before pairings were counted (no psc_paired row) are left out, not drawn as nobody paired.
    session.execute(TrajectorySnapshot.__table__.delete().where(TrajectorySnapshot.indicator == "psc_paired",
                                                                TrajectorySnapshot.day < cast.day(14)))
    session.commit()
    assert [p.day for p in services.pairing(session, cast.day(HISTORY_DAYS - 1), cast.today)] == [
        cast.day(n) for n in range(14, -1, -1)]
    assert len(services.coverage(session, cast.day(HISTORY_DAYS - 1), cast.today)) == HISTORY_DAYS
    # A pairing target's pace is fitted on the counted days only.
    services.add_target(session, label="Associées à PSC", percent=50, due=cast.today + dt.timedelta(days=60),
                        indicator="psc_paired", actor="test", today=cast.today)
    session.commit()
    [mine] = [t for t in services.targets(session, POLICY, cast.today) if t.indicator == "psc_paired"]
    assert mine.projection is not None and [d for d, _s in mine.projection.points] == [
        cast.day(n) for n in range(14, -1, -1)]
    assert mine.scope_fr == "identité associée à Pro Santé Connect — toutes les identités actives"
    milestones = svg_root(rssi_client.get(f"{BASE}/graphiques/appairage.svg"))
    assert "Jalons" in svg_text(milestones) and "Associées à PSC" in " ".join(milestones.itertext())
    assert "Associées à PSC" not in " ".join(svg_root(rssi_client.get(f"{BASE}/graphiques/couverture.svg")).itertext())
    page = plain(rssi_client.get(BASE))
    assert "Données : identité nationale (15 relevés)" in page
    assert f"du {cast.day(14):%d/%m/%Y} (16,7 %) au {cast.today:%d/%m/%Y} (16,7 %)" in page


def test_the_dashboard_for_one_population(rssi_client, cast):
    page = text_of(rssi_client.get(f"{BASE}?population=contract_type:interim"))
    assert f'src="{BASE}/graphiques/couverture.svg?dimension=contract_type&amp;valeur=interim"' in \
        rssi_client.get(f"{BASE}?population=contract_type:interim").get_data(as_text=True)
    assert "Type de contrat : Intérim" in page and "Objectif non atteignable au rythme actuel" in page
    # An unknown value is an empty population; an unknown dimension or an over-long value, a French 400 page.
    assert "Aucune valeur pour cette population." in text_of(rssi_client.get(f"{BASE}?population=pole:NOPE"))
    for bad in ("nope:x", "pole:", "pole:" + "x" * 200):
        response = rssi_client.get(f"{BASE}?population={bad}")
        assert response.status_code == 400 and "Requête invalide" in text_of(response), bad


def test_charts_are_svg_with_their_own_policy(rssi_client, cast):
    root = svg_root(rssi_client.get(f"{BASE}/graphiques/couverture.svg"))
    text = svg_text(root)
    assert "Part conforme (%)" in text and "Projection au rythme actuel" in text
    # One point per snapshot day on the compliant share's line; the projection's line has its two ends.
    lines = {g.get("class"): g.find(f"{SVG_NS}path").get("d") for g in root.iter(f"{SVG_NS}g")
             if (g.get("class") or "").startswith("series ") and g.find(f"{SVG_NS}path") is not None}
    assert [len(re.findall(r"[\d.]+ [\d.]+", d)) for _c, d in sorted(lines.items())] == [HISTORY_DAYS, 2]
    interim = svg_text(svg_root(rssi_client.get(f"{BASE}/graphiques/couverture.svg?dimension=contract_type"
                                                "&valeur=interim&jours=7")))
    assert "Intérim" in interim
    bars = svg_text(svg_root(rssi_client.get(f"{BASE}/graphiques/repartition.svg?dimension=contract_type")))
    assert "CDI ou titulaire — 100\u00a0%" in bars and "Intérim — 0\u00a0%" in bars
    units = svg_text(svg_root(rssi_client.get(f"{BASE}/graphiques/repartition.svg?dimension=unit")))
    assert "Cardiologie — 33,3\u00a0%" in units and "Urgences — 33,3\u00a0%" in units
    assert rssi_client.get(f"{BASE}/graphiques/camembert.svg").status_code == 404
    for bad in ("couverture.svg?dimension=nope", "couverture.svg?jours=0", "couverture.svg?jours=366",
                "couverture.svg?jours=abc", "couverture.svg?dimension=unit", "repartition.svg?dimension=all",
                "repartition.svg?dimension=" + "x" * 300):
        response = rssi_client.get(f"{BASE}/graphiques/{bad}")
        assert response.status_code == 400, bad


def test_milestones_on_the_coverage_chart(rssi_client, session, cast, rssi):
    services.add_target(session, label="Deux tiers dans un mois", percent=66, due=cast.today + dt.timedelta(days=30),
                        actor="test", today=cast.today)
    session.commit()
    root = svg_root(rssi_client.get(f"{BASE}/graphiques/couverture.svg"))
    assert "Jalons" in svg_text(root)
    assert "Deux tiers dans un mois" in " ".join(root.itertext())


# --- the people list ------------------------------------------------------------------------------------------


def names(response) -> list[str]:  # type: ignore[no-untyped-def]
    return re.findall(r'<tr data-person="[^"]+">\s*<th scope="row">(?:<a [^>]+>)?([^<]+)<',
                      response.get_data(as_text=True))


def test_the_people_list_and_its_filters(rssi_client, session, cast):
    p = cast.people
    response = rssi_client.get(f"{BASE}/personnes")
    assert response.status_code == 200
    # By default: the non-compliant and the pending, by name, with the reason in French and a directory link.
    assert names(response) == ["Bruno Blanc", "Chloé Collin", "Fanny Fabre"]
    page = text_of(response)
    reasons = {r.identity_id: r.reason for r in session.scalars(select(TrajectoryPersonStatus))}
    for who in ("bruno", "chloe", "fanny"):
        assert exports.REASON_LABELS_FR[reasons[p[who].id]] in page
    assert "Remise de MIE en cours" in page and "Aucun MIE" in page
    assert f'href="/annuaire/{p["bruno"].public_id}"' in response.get_data(as_text=True)
    assert "3 personnes — page 1 sur 1" in page
    assert names(rssi_client.get(f"{BASE}/personnes?statut=exempt")) == ["Emma Etienne"]
    assert names(rssi_client.get(f"{BASE}/personnes?statut=compliant")) == ["Alice Arnaud", "David Durand"]
    assert names(rssi_client.get(f"{BASE}/personnes?unite=URG")) == ["Bruno Blanc"]
    assert names(rssi_client.get(f"{BASE}/personnes?pole=POLE-MED")) == ["Chloé Collin", "Fanny Fabre"]
    assert names(rssi_client.get(f"{BASE}/personnes?contrat=interim&statut=tous")) == ["Bruno Blanc", "Emma Etienne"]
    assert names(rssi_client.get(f"{BASE}/personnes?rpps=oui&statut=tous")) == ["Alice Arnaud"]
    assert names(rssi_client.get(f"{BASE}/personnes?rpps=non")) == ["Bruno Blanc", "Chloé Collin", "Fanny Fabre"]
    # Paired with Pro Santé Connect on the statuses' day: alice; bruno's link was ended.
    assert names(rssi_client.get(f"{BASE}/personnes?psc=oui&statut=tous")) == ["Alice Arnaud"]
    assert names(rssi_client.get(f"{BASE}/personnes?psc=non&statut=tous&rpps=oui")) == []
    assert names(rssi_client.get(f"{BASE}/personnes?psc=non")) == ["Bruno Blanc", "Chloé Collin", "Fanny Fabre"]
    everyone = rssi_client.get(f"{BASE}/personnes?statut=tous").get_data(as_text=True)
    assert "<th scope=\"col\">Identité nationale</th>" in everyone
    alice = everyone[everyone.index(f'data-person="{p["alice"].public_id}"'):]
    assert re.search(r"<td>oui</td>\s*<td>associée</td>", alice[:alice.index("</tr>")])
    bruno = everyone[everyone.index(f'data-person="{p["bruno"].public_id}"'):]
    assert re.search(r"<td>non</td>\s*<td>non associée</td>", bruno[:bruno.index("</tr>")])
    nobody = rssi_client.get(f"{BASE}/personnes?unite=NOWHERE")
    assert nobody.status_code == 200 and "Personne ne correspond à ces filtres." in text_of(nobody)


def test_the_people_list_is_paginated(rssi_client, cast, monkeypatch):
    monkeypatch.setattr(trajectory_pages, "PAGE_SIZE", 2)
    first = rssi_client.get(f"{BASE}/personnes?statut=tous&pole=POLE-URG")
    assert names(first) == ["Bruno Blanc", "David Durand"]
    assert "3 personnes — page 1 sur 2" in text_of(first)
    assert f'href="{BASE}/personnes?page=2&amp;statut=tous&amp;pole=POLE-URG"' in first.get_data(as_text=True)
    assert names(rssi_client.get(f"{BASE}/personnes?statut=tous&pole=POLE-URG&page=2")) == ["Emma Etienne"]
    beyond = rssi_client.get(f"{BASE}/personnes?statut=tous&page=9")
    assert beyond.status_code == 200 and "Cette page est vide" in text_of(beyond)


@pytest.mark.parametrize("query, message", [
    ("statut=nope", "Statut inconnu « nope »."),
    ("contrat=astronaut", "Type de contrat inconnu « astronaut »."),
    ("rpps=peut-etre", "RPPS : « oui », « non » ou rien."),
    ("psc=associee", "Identité nationale : « oui », « non » ou rien."),
    ("page=abc", "Numéro de page invalide."),
    ("page=0", "Numéro de page invalide."),
    ("unite=" + "U" * 300, "Code trop long (au plus 100 caractères)."),
])
def test_a_bad_filter_is_a_french_page_without_list(rssi_client, cast, query, message):
    response = rssi_client.get(f"{BASE}/personnes?{query}")
    assert response.status_code == 400
    page = text_of(response)
    assert message in page and "Filtre invalide" in page and names(response) == []
    assert rssi_client.get(f"{BASE}/personnes.csv?{query}").status_code == (200 if query.startswith("page") else 400)


def test_the_people_csv_streams_the_filtered_list(rssi_client, cast):
    response = rssi_client.get(f"{BASE}/personnes.csv?pole=POLE-MED")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == \
        f'attachment; filename="trajectoire-personnes-{cast.today.isoformat()}.csv"'
    rows = csv_rows(response)
    assert rows[0] == list(exports.PEOPLE_COLUMNS)
    assert [(r[0], r[2], r[3], r[5], r[6]) for r in rows[1:]] == [
        ("Chloé Collin", "Enrôlement en cours", "Remise de MIE en cours", "non associée", "Étudiant ou stagiaire"),
        ("Fanny Fabre", "Non conforme", "Aucun MIE", "non associée", "CDD")]
    everyone = csv_rows(rssi_client.get(f"{BASE}/personnes.csv?statut=tous"))
    assert len(everyone) == 1 + 6
    assert rows[0][5] == "Identité nationale"
    assert [(r[0], r[4], r[5]) for r in csv_rows(rssi_client.get(f"{BASE}/personnes.csv?statut=tous&psc=oui"))[1:]] \
        == [("Alice Arnaud", "oui", "associée")]


# --- series exports -------------------------------------------------------------------------------------------


def test_the_series_as_csv_and_json(rssi_client, session, cast):
    total = count(session, TrajectorySnapshot)
    response = rssi_client.get(f"{BASE}/series.csv")
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Disposition"] == 'attachment; filename="trajectoire-series.csv"'
    rows = csv_rows(response)
    assert rows[0] == list(exports.SERIES_COLUMNS) and len(rows) == 1 + total
    urg = csv_rows(rssi_client.get(f"{BASE}/series.csv?dimension=unit&valeur=URG&indicateur=compliant"))
    assert [(r[0], r[1], r[3], r[4], r[5]) for r in urg[1:]] == [
        (d.isoformat(), "compliant", "unit", "URG", str(n))
        for d, n in services.series(session, "compliant", "unit", "URG")]
    assert urg[-1] == [cast.today.isoformat(), "compliant", "Avec un MIE conforme", "unit", "URG", "1"]
    week = csv_rows(rssi_client.get(f"{BASE}/series.csv?indicateur=active&dimension=all&du={cast.day(6)}"
                                    f"&au={cast.today}"))
    assert [r[0] for r in week[1:]] == [cast.day(n).isoformat() for n in range(6, -1, -1)]

    data = json.loads(rssi_client.get(f"{BASE}/series.json").get_data())
    assert data == exports.series_json(services.iter_series(session))
    compliant = json.loads(rssi_client.get(f"{BASE}/series.json?indicateur=compliant&dimension=all").get_data())
    assert len(compliant) == 1 and compliant[0]["label"] == "Avec un MIE conforme"
    assert compliant[0]["points"][-1] == [cast.today.isoformat(), 2]
    assert compliant[0]["points"][0] == [cast.day(HISTORY_DAYS - 1).isoformat(), 0]
    # The pairing series, day by day: bruno 15 to 11 days ago, then alice from 7 days ago.
    [paired] = json.loads(rssi_client.get(f"{BASE}/series.json?indicateur=psc_paired&dimension=all").get_data())
    assert paired["label"] == "Associées à Pro Santé Connect"
    assert paired["points"] == [[cast.day(n).isoformat(), 1 if 11 <= n <= 15 or n <= 7 else 0]
                                for n in range(HISTORY_DAYS - 1, -1, -1)]
    cardio = csv_rows(rssi_client.get(f"{BASE}/series.csv?indicateur=psc_paired&dimension=unit&valeur=CARDIO"
                                      f"&du={cast.day(8)}&au={cast.day(6)}"))
    assert [(r[0], r[2], r[5]) for r in cardio[1:]] == [(cast.day(n).isoformat(), "Associées à Pro Santé Connect",
                                                        "0" if n == 8 else "1") for n in (8, 7, 6)]
    response = rssi_client.get(f"{BASE}/series.json?dimension=pole&valeur=POLE-MED")
    assert response.mimetype == "application/json"
    assert {s["value"] for s in json.loads(response.get_data())} == {"POLE-MED"}


@pytest.mark.parametrize("query", ["du=2026-13-01", "au=hier", "du=2026-05-02&au=2026-05-01", "dimension=nope",
                                   "valeur=URG", "indicateur=" + "x" * 70, "indicateur=<script>",
                                   "dimension=" + "d" * 200])
def test_bad_series_parameters_are_400(rssi_client, cast, query):
    for ext in ("csv", "json"):
        response = rssi_client.get(f"{BASE}/series.{ext}?{query}")
        assert response.status_code == 400, (ext, query)


# --- the printable report -------------------------------------------------------------------------------------


def test_the_printable_report(rssi_client, cast):
    response = rssi_client.get(f"{BASE}/rapport")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == trajectory_pages.REPORT_CSP
    assert "script-src" not in response.headers["Content-Security-Policy"]
    body = response.get_data(as_text=True)
    page = text_of(response)
    assert "@page { size: A4" in body and "<nav" not in body and "<script" not in body
    assert f"Situation au <strong>{cast.today:%d/%m/%Y}</strong>" in page
    assert "Chiffres clés" in page and "Jalons" in page and "Unités les plus éloignées de la cible" in page
    assert "Projection de la couverture complète par population" in page
    assert body.count("<svg") == 2 and "Part conforme (%)" in page
    assert re.search(r'16,7 %</span>\s*<span class="label">associées à leur identité nationale Pro Santé Connect '
                     r'\(1\)', plain(response))
    # An earlier day, and a day before any snapshot.
    earlier = text_of(rssi_client.get(f"{BASE}/rapport?date={cast.day(7).isoformat()}"))
    assert f"Situation au <strong>{cast.day(7):%d/%m/%Y}</strong>" in earlier
    before = text_of(rssi_client.get(f"{BASE}/rapport?date=2001-01-01"))
    assert "Aucun relevé n'a encore été pris à cette date." in before
    for bad in ("2026-02-30", "demain", "2026-01-01T00:00:00+01:00"):
        assert rssi_client.get(f"{BASE}/rapport?date={bad}").status_code == 400


# --- targets --------------------------------------------------------------------------------------------------


def journal(session, tag: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag)))


def test_the_rssi_adds_and_removes_a_target(rssi_client, session, cast, rssi):
    page = rssi_client.get(f"{BASE}/cibles")
    assert page.status_code == 200 and "fichier de politique" in text_of(page)
    due = cast.today + dt.timedelta(days=120)
    response = rssi_client.post(f"{BASE}/cibles", data={
        "csrf_token": token_of(rssi_client, f"{BASE}/cibles"), "label": "Tous les intérimaires équipés",
        "percent": "100", "due": due.isoformat(), "dimension": "contract_type", "value": "interim",
        "indicator": "compliant"})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"{BASE}/cibles")
    row = session.scalar(select(TrajectoryTarget))
    assert (row.label, row.percent, row.due, row.dimension, row.value, row.created_by) == (
        "Tous les intérimaires équipés", 100, due, "contract_type", "interim", f"officer:{rssi.user_name}")
    [event] = journal(session, tags.TRAJECTORY_TARGET_ADDED)
    assert event.actor == f"officer:{rssi.user_name}"
    after = text_of(rssi_client.get(f"{BASE}/cibles"))
    assert "Objectif ajouté : 100 % au" in after and "Tous les intérimaires équipés" in after
    assert "MIE conforme — type de contrat : Intérim" in after  # the scope, in French
    assert "100,0&nbsp;pt" in rssi_client.get(BASE).get_data(as_text=True)  # 0 % of the interim staff today

    removed = rssi_client.post(f"{BASE}/cibles/{row.public_id}/retrait",
                               data={"csrf_token": token_of(rssi_client, f"{BASE}/cibles")})
    assert removed.status_code == 303
    session.expire_all()
    assert session.get(TrajectoryTarget, row.id).removed_at is not None
    assert len(journal(session, tags.TRAJECTORY_TARGET_REMOVED)) == 1
    assert "Tous les intérimaires équipés" not in text_of(rssi_client.get(f"{BASE}/cibles"))
    again = rssi_client.post(f"{BASE}/cibles/{row.public_id}/retrait",
                             data={"csrf_token": token_of(rssi_client, f"{BASE}/cibles")})
    assert again.status_code == 409 and "déjà été retiré" in text_of(again)
    policy_target = rssi_client.post(f"{BASE}/cibles/rie-2026-couverture/retrait",
                                     data={"csrf_token": token_of(rssi_client, f"{BASE}/cibles")})
    assert policy_target.status_code == 409 and "fichier de politique" in text_of(policy_target)
    unknown = rssi_client.post(f"{BASE}/cibles/00000000-0000-0000-0000-000000000000/retrait",
                               data={"csrf_token": token_of(rssi_client, f"{BASE}/cibles")})
    assert unknown.status_code == 404
    assert len(journal(session, tags.TRAJECTORY_TARGET_REMOVED)) == 1


@pytest.mark.parametrize("fields, errors", [
    ({"label": "", "percent": "150", "due": "2020-01-01"},
     {"label": "Le libellé de l'objectif est obligatoire.",
      "percent": "Le pourcentage doit être un nombre entier de 1 à 100.",
      "due": "L'échéance doit être aujourd'hui"}),
    ({"due": "31/03/2027", "percent": "abc"}, {"due": "Échéance invalide « 31/03/2027 »", "percent": "1 à 100"}),
    ({"dimension": "planet", "value": "mars"}, {"dimension": "Dimension inconnue « planet »"}),
    ({"dimension": "unit", "value": "NOWHERE"}, {"value": "Unité inconnue de l'annuaire « NOWHERE »."}),
    ({"dimension": "contract_type", "value": ""}, {"value": "La valeur est obligatoire"}),
    ({"label": "L" * 300}, {"label": "Le libellé ne doit pas dépasser 200 caractères."}),
    ({"dimension": "unit", "value": "V" * 150}, {"value": "La valeur ne doit pas dépasser 100 caractères."}),
    ({"indicator": "happiness"}, {"indicator": "Indicateur inconnu « happiness »"}),
])
def test_a_bad_target_is_refused_field_by_field_and_nothing_changes(rssi_client, session, cast, fields, errors):
    before = (count(session, TrajectoryTarget), count(session, AuditEvent))
    data = {"csrf_token": token_of(rssi_client, f"{BASE}/cibles"), "label": "Objectif", "percent": "80",
            "due": (cast.today + dt.timedelta(days=30)).isoformat(), "dimension": "all", "value": "",
            "indicator": "compliant", **fields}
    response = rssi_client.post(f"{BASE}/cibles", data=data)
    assert response.status_code == 400
    page = text_of(response)
    assert "L'objectif n'a pas été ajouté" in page
    for name, message in errors.items():
        assert re.search(rf'id="err-{name}">[^<]*{re.escape(message)}', page), (name, message)
    assert (count(session, TrajectoryTarget), count(session, AuditEvent)) == before


def test_a_target_form_without_its_csrf_token_is_refused(rssi_client, session, cast):
    response = rssi_client.post(f"{BASE}/cibles", data={"label": "Objectif", "percent": "80",
                                                        "due": (cast.today + dt.timedelta(days=3)).isoformat()})
    assert response.status_code == 400
    assert count(session, TrajectoryTarget) == 0
