"""Remote enrollment through the FranceConnect+ simulator, with the Flask test client: the officer sends the
invitation from the desk, the person opens the e-mail's link, verifies their identity on the simulator and
activates an MIE — and every failure (cancel, state, replay, signature, encryption, acr, mismatch, expired
invitation, malformed input) with its journal entry and nothing activated.

The simulator runs in the same application (env ``test``, no discovery URL); our client's HTTP requests reach
it through ``tests.fcplus_helpers.wsgi_fetch``. The person's browser and the officer's are two test clients.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import urllib.parse
from html import unescape

import pyotp
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

import hospiconnect.cli
from hospiconnect import create_app
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie, Notification
from hospiconnect.authenticators.notifications import readable_body
from hospiconnect.db import utcnow
from hospiconnect.devtools import fcplus_simulator as sim
from hospiconnect.enrollment import remote, upstream_keys
from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.models import EnrollmentCase, FcPlusTransaction, Invitation
from hospiconnect.idp import login_session
from hospiconnect.jobs import run_all
from tests.factories import create_identity
from tests.fcplus_helpers import choose_identity, wsgi_fetch

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
SEED_RE = re.compile(r'<code id="totp-seed">([A-Z2-7 ]+)</code>')
LINK_RE = re.compile(r"http://localhost(/activation/invitation/[A-Za-z0-9_-]{43})")
GOOD_PASSWORD = "correct cheval pile agrafe"
CALLBACK = "/activation/franceconnect/retour"
AUTHORIZE = "http://localhost/simulateur-franceconnect/api/v2/authorize?"


def text_of(response) -> str:  # type: ignore[no-untyped-def]
    return unescape(response.get_data(as_text=True))


def csrf(response) -> str:  # type: ignore[no-untyped-def]
    match = CSRF_RE.search(response.get_data(as_text=True))
    assert match, "no CSRF token in the page"
    return match.group(1)


def path_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def directory_person(session, key: str = "camille", **overrides):  # type: ignore[no-untyped-def]
    """The directory identity of the simulator's test identity ``key`` (its pivot claims, a work e-mail)."""
    claims = sim.TEST_IDENTITIES[key].claims()
    values = dict(birth_family_name=claims["family_name"].title(), given_names=claims["given_name"],
                  birth_date=claims["birthdate"], birth_place=claims["birthplace"],
                  birth_country=claims["birthcountry"], gender={"female": "F", "male": "M"}[claims["gender"]],
                  email=f"{key}@chu-exemple.fr")
    return create_identity(session, **{**values, **overrides})


@pytest.fixture()
def remote_app(app, rt, session):  # type: ignore[no-untyped-def]
    upstream_keys.ensure_keys(session, rt.keys)
    session.commit()
    app.extensions["hospiconnect.fcplus_fetch"] = wsgi_fetch(app)
    remote.clear_caches()
    yield app
    remote.clear_caches()


@pytest.fixture()
def officer(session):  # type: ignore[no-untyped-def]
    return create_identity(session, roles="enrollment_officer", birth_family_name="Agent")


@pytest.fixture()
def camille(session):  # type: ignore[no-untyped-def]
    return directory_person(session)


@pytest.fixture()
def desk(remote_app, rt, officer):  # type: ignore[no-untyped-def]
    client = remote_app.test_client()
    with rt.db.session() as s:
        _sso, cookie = login_session.open(s, rt.keys, rt.settings, identity_id=officer.id, amr=["mfa", "otp", "pwd"],
                                          acr="eidas2", mfa=True, existing=None, client_ip="127.0.0.1",
                                          user_agent="pytest", now=utcnow())
    client.set_cookie(login_session.cookie_name(rt.settings), cookie)
    return client


@pytest.fixture()
def browser(remote_app):  # type: ignore[no-untyped-def]
    return remote_app.test_client()


def open_case(desk, person) -> str:  # type: ignore[no-untyped-def]
    page = desk.get(f"/guichet/personnes/{person.public_id}")
    opened = desk.post(f"/guichet/personnes/{person.public_id}/dossiers",
                       data={"csrf_token": csrf(page), "kind": "first_mie"})
    assert opened.status_code == 303, text_of(opened)
    return opened.headers["Location"].rstrip("/").rsplit("/", 1)[1]


def send_invitation(desk, session, person) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Open a case at the desk, send the invitation; return (case public id, the link's path from the mail)."""
    case_id = open_case(desk, person)
    page = desk.get(f"/guichet/dossiers/{case_id}")
    assert "Envoyer une invitation FranceConnect+" in text_of(page) and person.email in text_of(page)
    sent = desk.post(f"/guichet/dossiers/{case_id}/invitation", data={"csrf_token": csrf(page)})
    assert sent.status_code == 303, text_of(sent)
    session.expire_all()
    mail = session.scalars(select(Notification).order_by(Notification.id.desc())).first()
    assert mail is not None and mail.recipient == person.email
    assert LINK_RE.search(mail.body) is None  # encrypted at rest
    keys = desk.application.extensions["hospiconnect"].keys
    return case_id, LINK_RE.search(readable_body(mail, keys)).group(1)


def start_check(browser, link: str) -> str:  # type: ignore[no-untyped-def]
    """Open the invitation and press the FranceConnect+ button; return the authorization URL."""
    welcome = browser.get(link)
    assert welcome.status_code == 200, text_of(welcome)
    started = browser.post(link, data={"csrf_token": csrf(welcome)})
    assert started.status_code == 303, text_of(started)
    assert started.headers["Location"].startswith(AUTHORIZE)
    return started.headers["Location"]


def callback(browser, params: dict[str, str]):  # type: ignore[no-untyped-def]
    return browser.get(CALLBACK, query_string=params)


def leave_provider(browser, response):  # type: ignore[no-untyped-def]
    """Follow our redirect through the simulator's end-session endpoint and back; return our next redirect."""
    assert response.status_code == 303, text_of(response)
    end = urllib.parse.urlsplit(response.headers["Location"])
    assert end.path == "/simulateur-franceconnect/api/v2/session/end"
    query = dict(urllib.parse.parse_qsl(end.query))
    assert query["post_logout_redirect_uri"] == "http://localhost/activation/franceconnect/deconnexion"
    assert query["id_token_hint"].count(".") == 2 and len(query["state"]) >= 32  # signed, not encrypted
    back = browser.get(path_of(response.headers["Location"]))
    assert back.status_code == 302, text_of(back)
    returned = browser.get(path_of(back.headers["Location"]))
    assert returned.status_code == 303, text_of(returned)
    return returned


def journal(session, tag: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.seq)))


def case_row(session, case_id: str) -> EnrollmentCase:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(EnrollmentCase).where(EnrollmentCase.public_id == case_id))


def assert_nothing_activated(session, person, case_id: str,  # type: ignore[no-untyped-def]
                             state: str = wf.OPENED) -> None:
    case = case_row(session, case_id)
    assert case.state == state and case.activated_mie_id is None and case.identity_check_method is None
    assert session.scalar(select(func.count()).select_from(Mie).where(Mie.identity_id == person.id,
                                                                      Mie.status == "active")) == 0


def last_failure(session) -> dict:  # type: ignore[type-arg]
    event = journal(session, tags.ENROLLMENT_FCPLUS_FAILED)[-1]
    assert event.outcome == "failure"
    return json.loads(event.details)


# --- the whole path ---------------------------------------------------------------------------------------


def test_invitation_then_franceconnect_then_totp_activation(desk, browser, session,  # type: ignore[no-untyped-def]
                                                            camille) -> None:
    case_id, link = send_invitation(desk, session, camille)
    page = desk.get(f"/guichet/dossiers/{case_id}")
    assert "Invitation envoyée à camille@chu-exemple.fr" in text_of(page)
    assert "Invitations envoyées" in text_of(page) and "envoyée" in text_of(page)

    welcome = browser.get(link)
    assert welcome.status_code == 200 and welcome.headers["Cache-Control"] == "no-store"
    html = text_of(welcome)
    assert "Bonjour Camille," in html and "Vérifier mon identité avec" in html and "FranceConnect+" in html
    assert "Delavergne" not in html and "DELAVERGNE" not in html and "1988" not in html  # first name only
    assert "form-action 'self' http://localhost" in welcome.headers["Content-Security-Policy"]
    authorize = start_check(browser, link)
    params = choose_identity(browser, authorize, "camille")
    assert set(params) == {"code", "state", "iss"}

    returned = leave_provider(browser, callback(browser, params))
    assert returned.headers["Location"].endswith("/activation/moyen")
    choice = browser.get("/activation/moyen")
    assert choice.status_code == 200 and "Identité vérifiée avec FranceConnect+" in text_of(choice)
    case = case_row(session, case_id)
    assert case.state == wf.MIE_ISSUED and case.identity_check_method == wf.METHOD_FCPLUS
    assert case.fcplus_sub == sim.TEST_IDENTITIES["camille"].sub and case.fcplus_issuer == sim.issuer(
        desk.application.config["SETTINGS"])

    setup = browser.post("/activation/application", data={"csrf_token": csrf(choice)})
    seed = SEED_RE.search(setup.get_data(as_text=True)).group(1).replace(" ", "")
    confirmed = browser.post("/activation/application/confirmer",
                             data={"csrf_token": csrf(setup), "code": pyotp.TOTP(seed).now()})
    assert confirmed.status_code == 303, text_of(confirmed)
    pw_page = browser.get("/activation/suite")
    assert browser.post("/activation/mot-de-passe", data={"csrf_token": csrf(pw_page), "password": GOOD_PASSWORD,
                                                           "confirmation": GOOD_PASSWORD}).status_code == 303
    offer = browser.get("/activation/suite")
    assert browser.post("/activation/codes-de-secours", data={"csrf_token": csrf(offer)}).status_code == 200
    done = browser.get("/activation/terminee")
    assert done.status_code == 200 and "fiche d'activation" not in text_of(done)

    case = case_row(session, case_id)
    assert case.state == wf.ACTIVATED
    mie = session.get(Mie, case.activated_mie_id)
    assert mie.type == "totp" and mie.status == "active" and mie.proofing_method == "fcplus"
    invitation = session.scalar(select(Invitation).where(Invitation.case_id == case.id))
    assert invitation.opened_at is not None and invitation.used_at is not None
    assert session.scalar(select(func.count()).select_from(FcPlusTransaction)) == 0
    for tag in (tags.ENROLLMENT_INVITATION_SENT, tags.ENROLLMENT_INVITATION_OPENED, tags.ENROLLMENT_FCPLUS_STARTED,
                tags.ENROLLMENT_FCPLUS_COMPLETED, tags.ENROLLMENT_IDENTITY_VERIFIED, tags.ENROLLMENT_MIE_ISSUED,
                tags.ENROLLMENT_CASE_ACTIVATED):
        assert len(journal(session, tag)) == 1, tag
    assert journal(session, tags.ENROLLMENT_FCPLUS_FAILED) == []
    assert audit.verify(session).ok
    # The link has served: opening it again explains why it no longer works.
    again = browser.get(link)
    assert again.status_code == 410 and "déjà servi" in text_of(again)
    # The desk shows the remote check.
    assert "par FranceConnect+" in text_of(desk.get(f"/guichet/dossiers/{case_id}"))


def test_mismatch_rejects_the_case_and_shows_the_fields_to_the_officer(desk, browser,  # type: ignore[no-untyped-def]
                                                                       session, camille) -> None:
    case_id, link = send_invitation(desk, session, camille)
    params = choose_identity(browser, start_check(browser, link), "camille-homonyme")
    returned = leave_provider(browser, callback(browser, params))
    page = browser.get(path_of(returned.headers["Location"]))
    assert page.status_code == 200
    text = text_of(page)
    assert "Votre identité n'a pas pu être confirmée" in text and "guichet d'enrôlement" in text
    assert "pièce d'identité" in text and "1991" not in text and "69123" not in text
    assert_nothing_activated(session, camille, case_id, wf.REJECTED)
    case = case_row(session, case_id)
    assert case.rejection_reasons == ["birth_date", "birth_place"]
    assert browser.get("/activation/moyen").status_code == 400  # no activation step was started
    [mismatch] = journal(session, tags.ENROLLMENT_IDENTITY_MISMATCH)
    assert json.loads(mismatch.details)["differences"] == ["birth_date", "birth_place"]
    officer_view = text_of(desk.get(f"/guichet/dossiers/{case_id}"))
    assert "Vérification FranceConnect+ refusée" in officer_view
    assert "date de naissance" in officer_view and "commune de naissance" in officer_view
    assert "1991-09-23" not in officer_view
    assert browser.get(link).status_code == 410


def test_cancel_at_franceconnect_leaves_the_invitation_valid(desk, browser, session,  # type: ignore[no-untyped-def]
                                                             camille) -> None:
    case_id, link = send_invitation(desk, session, camille)
    params = choose_identity(browser, start_check(browser, link), cancel=True)
    assert params["error"] == "access_denied"
    page = callback(browser, params)
    assert page.status_code == 200
    assert "Vous avez annulé" in text_of(page) and f'href="{link}"' in page.get_data(as_text=True)
    assert last_failure(session)["error"] == "AccessDenied"
    assert_nothing_activated(session, camille, case_id)
    # Trying again works.
    params = choose_identity(browser, start_check(browser, link), "camille")
    assert leave_provider(browser, callback(browser, params)).headers["Location"].endswith("/activation/moyen")


def test_state_mismatch_is_refused(desk, browser, session, camille) -> None:  # type: ignore[no-untyped-def]
    case_id, link = send_invitation(desk, session, camille)
    params = choose_identity(browser, start_check(browser, link), "camille")
    forged = callback(browser, {**params, "state": "f" * 43})
    assert forged.status_code == 400 and "state invalide" in text_of(forged)
    assert last_failure(session) == {"error": "StateMismatch", "reason": "unknown_state"}
    assert_nothing_activated(session, camille, case_id)


def test_replayed_callback_is_refused(desk, browser, remote_app, session,  # type: ignore[no-untyped-def]
                                      camille) -> None:
    case_id, link = send_invitation(desk, session, camille)
    params = choose_identity(browser, start_check(browser, link), "camille")
    # Another browser with the stolen callback URL gets nothing, and spends nothing.
    thief = remote_app.test_client()
    stolen = callback(thief, params)
    assert stolen.status_code == 400 and "autre navigateur" in text_of(stolen)
    assert last_failure(session)["reason"] == "foreign_browser"
    first = callback(browser, params)
    assert first.status_code == 303
    replay = callback(browser, params)
    assert replay.status_code == 400
    failure = last_failure(session)
    assert failure["error"] == "StateMismatch" and failure["reason"] == "unknown_state"
    case = case_row(session, case_id)
    assert case.state == wf.MIE_ISSUED
    assert len(journal(session, tags.ENROLLMENT_IDENTITY_VERIFIED)) == 1


@pytest.mark.parametrize(("behaviour", "status", "error", "words"), [
    (sim.BAD_SIGNATURE, 502, "BadTokenSignature", "signature du jeton"),
    (sim.FOREIGN_ENCRYPTION, 502, "UndecryptableToken", "déchiffré"),
    (sim.ACR_EIDAS1, 403, "AcrTooLow", "niveau de garantie"),
    (sim.OTHER_SUB, 502, "SubjectMismatch", "ne concernent pas"),
])
def test_bad_tokens_are_refused(desk, browser, session, camille, behaviour, status,  # type: ignore[no-untyped-def]
                                error, words) -> None:
    case_id, link = send_invitation(desk, session, camille)
    params = choose_identity(browser, start_check(browser, link), "camille", behaviour=behaviour)
    page = callback(browser, params)
    assert page.status_code == status, text_of(page)
    assert words in text_of(page) and "Recommencer la vérification" in text_of(page)
    failure = last_failure(session)
    assert failure["error"] == error and failure["case"] == case_id
    assert "eyJ" not in json.dumps(failure)  # never a token in the journal
    assert_nothing_activated(session, camille, case_id)
    assert session.scalar(select(Invitation.used_at).where(Invitation.case_id == case_row(session, case_id).id)) is None
    assert browser.get("/activation/moyen").status_code == 400


def test_expired_invitation_is_refused(desk, browser, session, camille) -> None:  # type: ignore[no-untyped-def]
    case_id, link = send_invitation(desk, session, camille)
    session.execute(update(Invitation).values(expires_at=utcnow() - dt.timedelta(minutes=1)))
    session.commit()
    page = browser.get(link)
    assert page.status_code == 410 and "a expiré" in text_of(page)
    refused = journal(session, tags.ENROLLMENT_INVITATION_REFUSED)[-1]
    assert json.loads(refused.details)["reason"] == "expired" and refused.subject == camille.public_id
    posted = browser.post(link, data={})  # no page, no CSRF token: refused before anything starts
    assert posted.status_code == 400
    assert session.scalar(select(func.count()).select_from(FcPlusTransaction)) == 0
    assert_nothing_activated(session, camille, case_id)


def test_new_invitation_replaces_the_old_link(desk, browser, session, camille) -> None:  # type: ignore[no-untyped-def]
    case_id, old_link = send_invitation(desk, session, camille)
    page = desk.get(f"/guichet/dossiers/{case_id}")
    assert desk.post(f"/guichet/dossiers/{case_id}/invitation", data={"csrf_token": csrf(page)}).status_code == 303
    refused = browser.get(old_link)
    assert refused.status_code == 410 and "remplacée" in text_of(refused)
    assert "remplacée" in text_of(desk.get(f"/guichet/dossiers/{case_id}"))


def test_desk_explains_why_no_invitation_can_be_sent(desk, session) -> None:  # type: ignore[no-untyped-def]
    no_mail = directory_person(session, email="")
    case_id = open_case(desk, no_mail)
    page = text_of(desk.get(f"/guichet/dossiers/{case_id}"))
    assert "Invitation FranceConnect+ impossible" in page and "adresse e-mail professionnelle" in page
    assert "Envoyer une invitation FranceConnect+" not in page
    token = csrf(desk.get(f"/guichet/dossiers/{case_id}"))
    refused = desk.post(f"/guichet/dossiers/{case_id}/invitation", data={"csrf_token": token})
    assert refused.status_code == 409 and "adresse e-mail professionnelle" in text_of(refused)
    assert session.scalar(select(func.count()).select_from(Invitation)) == 0


def test_malformed_input_never_fails(desk, browser, session, camille) -> None:  # type: ignore[no-untyped-def]
    _case_id, link = send_invitation(desk, session, camille)
    for path in ("/activation/invitation/" + "A" * 43, "/activation/invitation/" + "x" * 10000,
                 "/activation/invitation/%00%FF", "/activation/invitation/abc%2F..%2F"):
        response = browser.get(path)
        assert response.status_code in (404, 410), path
        assert "Une erreur inattendue" not in text_of(response)
    welcome = browser.get(link)
    params = choose_identity(browser, start_check(browser, link), "camille")
    for query in ({}, {"state": ""}, {"state": "\x00" * 40}, {"code": "x", "state": "y" * 10000},
                  {"error": "<script>alert(1)</script>", "state": "z" * 43}):
        response = callback(browser, query)
        assert response.status_code == 400, query
        assert "<script>" not in response.get_data(as_text=True)
    repeated = browser.get(f"{CALLBACK}?{urllib.parse.urlencode(params)}&state=autre")
    assert repeated.status_code == 400 and "mal formée" in text_of(repeated)
    assert last_failure(session)["reason"] == "malformed"
    # The genuine callback still works after all that.
    assert callback(browser, params).status_code == 303
    assert browser.get("/activation/franceconnect/deconnexion?state=x&state=y").status_code == 400
    assert browser.post(link, data={"csrf_token": csrf(welcome)}).status_code == 410
    assert audit.verify(session).ok


def test_logout_return_without_a_pending_logout(browser) -> None:  # type: ignore[no-untyped-def]
    page = browser.get("/activation/franceconnect/deconnexion?state=" + "a" * 43)
    assert page.status_code == 400 and "n'a pas pu être confirmée" in text_of(page)


def test_public_encryption_keys(remote_app, browser) -> None:  # type: ignore[no-untyped-def]
    response = browser.get("/franceconnect/jwks.json")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "public, max-age=3600"
    keys = response.get_json()["keys"]
    assert sorted(k["kty"] for k in keys) == ["EC", "RSA"]
    assert all("d" not in k and "p" not in k and k["use"] == "enc" for k in keys)


def test_jobs_purge_abandoned_checks(desk, browser, rt, session, camille) -> None:  # type: ignore[no-untyped-def]
    _case_id, link = send_invitation(desk, session, camille)
    start_check(browser, link)
    session.execute(update(FcPlusTransaction).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    session.commit()
    report = run_all(rt)
    assert report["purged"]["fcplus_transactions"] == 1
    assert run_all(rt)["purged"]["fcplus_transactions"] == 0


# --- the command line -------------------------------------------------------------------------------------


def test_cli_invite_opens_a_case_and_sends_the_invitation(rt, session, camille) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    result = runner.invoke(hospiconnect.cli.main, ["enrollment", "invite", camille.user_name, "--json"], obj=rt)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    data = json.loads(result.stdout)
    assert data["case_opened"] is True and data["kind"] == "first_mie" and data["email"] == camille.email
    assert "http" not in result.stdout  # the link goes only to the person's mailbox
    session.expire_all()
    case = session.scalar(select(EnrollmentCase).where(EnrollmentCase.public_id == data["case"]))
    assert case.opened_by == "cli" and case.state == wf.OPENED
    [mail] = session.scalars(select(Notification)).all()
    assert mail.recipient == camille.email and LINK_RE.search(readable_body(mail, rt.keys))
    [sent] = journal(session, tags.ENROLLMENT_INVITATION_SENT)
    assert sent.actor == "cli"

    again = runner.invoke(hospiconnect.cli.main, ["enrollment", "invite", camille.public_id], obj=rt)
    assert again.exit_code == 0 and "Invitation FranceConnect+ envoyée à" in again.stdout
    assert session.scalar(select(func.count()).select_from(EnrollmentCase)) == 1

    missing = runner.invoke(hospiconnect.cli.main, ["enrollment", "invite", "personne-inconnue"], obj=rt)
    assert missing.exit_code != 0 and "Aucune identité" in missing.stderr
    no_mail = directory_person(session, "sacha-ne-a-letranger", email="")
    refused = runner.invoke(hospiconnect.cli.main, ["enrollment", "invite", no_mail.user_name], obj=rt)
    assert refused.exit_code != 0 and "adresse e-mail professionnelle" in refused.stderr


def test_production_without_franceconnect_offers_no_remote_enrollment(rt) -> None:  # type: ignore[no-untyped-def]
    production = dataclasses.replace(rt.settings, env="production", issuer="https://idp.chu-exemple.fr")
    assert not production.fcplus_enabled
    app = create_app(production)
    client = app.test_client()
    client.environ_base.update(HTTP_HOST="idp.chu-exemple.fr", **{"wsgi.url_scheme": "https"})
    page = client.get("/activation/invitation/" + "A" * 43)
    assert page.status_code == 503 and "n'est pas proposé" in text_of(page)
    assert client.get("/simulateur-franceconnect/api/v2/.well-known/openid-configuration").status_code == 404
    app.extensions["hospiconnect"].db.dispose()


def test_without_real_mail_outside_production_the_desk_shows_the_link(desk, session, camille) -> None:  # type: ignore[no-untyped-def]
    case_id, link = send_invitation(desk, session, camille)
    page = text_of(desk.get(f"/guichet/dossiers/{case_id}"))
    assert "aucun e-mail n'est réellement envoyé" in page and link in page


def test_with_real_mail_the_desk_never_shows_the_link(desk, session, camille, remote_app) -> None:  # type: ignore[no-untyped-def]
    runtime = remote_app.extensions["hospiconnect"]
    original = runtime.settings
    remote_app.config["SETTINGS"] = runtime.settings = dataclasses.replace(original, mail_sender="file")
    try:
        case_id, link = send_invitation(desk, session, camille)
        page = text_of(desk.get(f"/guichet/dossiers/{case_id}"))
    finally:
        remote_app.config["SETTINGS"] = runtime.settings = original
    assert "Invitation envoyée" in page and link not in page
