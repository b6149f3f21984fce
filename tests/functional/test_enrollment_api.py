"""Enrollment JSON API (/api/v1) through the Flask test client.

A helpdesk tool is a registered client with the scope ``enrollment``; it calls the API with the access
token of the officer signed in to it. The main path obtains that token through a real code flow
(tests.oidc_helpers); the other tests issue tokens with :func:`hospiconnect.idp.tokens.issue`, so that the
scope, the factors and ``auth_time`` are exactly what each case needs.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from sqlalchemy import func, select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie
from hospiconnect.db import utcnow
from hospiconnect.enrollment.models import ActivationCode, EnrollmentCase
from hospiconnect.idp import tokens
from tests.factories import create_identity
from tests.oidc_helpers import register, tokens_for

API = "/api/v1"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
DOCUMENT = {"document_type": "cni", "issuing_country": "FRA", "expiry_date": "2031-05-01", "last4": "12AB",
            "place": "Accueil RH"}


@pytest.fixture()
def officer(session):  # type: ignore[no-untyped-def]
    return create_identity(session, roles="enrollment_officer", birth_family_name="Agent")


@pytest.fixture()
def other_officer(session):  # type: ignore[no-untyped-def]
    return create_identity(session, roles="enrollment_officer", birth_family_name="Collegue")


@pytest.fixture()
def person(session):  # type: ignore[no-untyped-def]
    return create_identity(session, birth_family_name="Dupont", given_names="Lucie")


@pytest.fixture()
def tool(session, rt):  # type: ignore[no-untyped-def]
    """The helpdesk tool: a client registered with the scope ``enrollment``."""
    return register(session, rt, name="Outil d'assistance", scopes="openid profile enrollment")


def issue_token(rt, tool, identity, *, scope: str = "openid enrollment", amr=("mfa", "otp", "pwd"),
                minutes_ago: int = 0) -> str:
    """Store an access token of ``tool`` for ``identity`` (authenticated ``minutes_ago`` with ``amr``)."""
    with rt.db.session() as s:
        grant = tokens.Grant(client_id=tool.client_id, identity_id=identity.id, session_id=None, scope=scope,
                             auth_time=utcnow() - dt.timedelta(minutes=minutes_ago), acr="eidas2", amr=tuple(amr))
        return tokens.issue(s, rt.keys, rt.settings, grant, access_scope=scope, with_refresh=False).access_token


class Api:
    """The helpdesk tool's HTTP calls, with its bearer token and no cookie."""

    def __init__(self, app, token: str | None) -> None:  # type: ignore[no-untyped-def]
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **kwargs):  # type: ignore[no-untyped-def]
        return self.client.get(API + path, headers=self.headers, **kwargs)

    def post(self, path: str, body: object = None, **kwargs):  # type: ignore[no-untyped-def]
        if body is not None:
            kwargs["json"] = body
        return self.client.post(API + path, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)


@pytest.fixture()
def api(app, rt, tool, officer):  # type: ignore[no-untyped-def]
    return Api(app, issue_token(rt, tool, officer))


def events(session, tag: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag).order_by(AuditEvent.seq)))


def count(session, model) -> int:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model)) or 0


def case_state(session, case_id: str) -> str | None:  # type: ignore[no-untyped-def]
    session.expire_all()
    return session.scalar(select(EnrollmentCase.state).where(EnrollmentCase.public_id == case_id))


def assert_error(response, status: int, error: str, field: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == error, body
    assert isinstance(body["message"], str) and body["message"]
    if field is not None:
        assert body["field"] == field, body
    return body


def open_case(api, person, **body):  # type: ignore[no-untyped-def]
    response = api.post(f"/identities/{person.public_id}/cases", {"kind": "first_mie", **body})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


def verified_case(api, person) -> str:  # type: ignore[no-untyped-def]
    case_id = open_case(api, person)
    assert api.post(f"/cases/{case_id}/document-check", DOCUMENT).status_code == 200
    return case_id


# --- the OpenAPI document -------------------------------------------------------------------------------


def _resolve(doc: dict, ref: str) -> dict:
    node: object = doc
    for part in ref.removeprefix("#/").split("/"):
        assert isinstance(node, dict) and part in node, ref
        node = node[part]
    assert isinstance(node, dict)
    return node


def _refs(node: object):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_openapi_document_describes_every_route(app, client, rt):
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    assert "Authorization" not in response.request.headers  # public
    doc = json.loads(response.get_data(as_text=True))
    assert doc["openapi"] == "3.1.0"
    assert doc["servers"] == [{"url": rt.settings.issuer}]
    scheme = doc["components"]["securitySchemes"]["hospiconnect"]
    assert scheme["type"] == "openIdConnect"
    assert scheme["openIdConnectUrl"] == f"{rt.settings.issuer}/.well-known/openid-configuration"
    assert doc["security"] == [{"hospiconnect": ["enrollment"]}]

    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("enrollment_api."):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            routes |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert routes == documented
    assert len(routes) == 8

    operation_ids = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            operation_ids.append(operation["operationId"])
            assert operation["responses"], (path, method)
            assert any(code.startswith("2") for code in operation["responses"]), (path, method)
            declared = set()
            for parameter in operation.get("parameters", []):
                if "$ref" in parameter:
                    parameter = _resolve(doc, parameter["$ref"])
                declared.add(parameter["name"])
            assert set(re.findall(r"{([^}]+)}", path)) <= declared, (path, method)
            if path != f"{API}/openapi.json":
                assert {"401", "403"} <= set(operation["responses"]), (path, method)
                for code in ("401", "403"):
                    answer = _resolve(doc, operation["responses"][code]["$ref"])
                    assert "WWW-Authenticate" in answer["headers"]
            if method == "post" and path.endswith(("/cases", "/document-check", "/cancel")):
                assert "requestBody" in operation
    assert len(operation_ids) == len(set(operation_ids))
    for ref in _refs(doc):
        _resolve(doc, ref)
    assert doc["paths"][f"{API}/openapi.json"]["get"]["security"] == []


# --- the whole path -------------------------------------------------------------------------------------


def test_enrollment_through_the_api_with_a_real_code_flow(app, client, rt, session, tool, officer, person):
    body = tokens_for(client, rt, tool, officer, second_factor=True, scope="openid enrollment")
    assert "enrollment" in body["scope"].split()
    api = Api(app, body["access_token"])
    actor = f"officer:{officer.user_name}"

    found = api.get("/identities", query_string={"q": "dupont"})
    assert found.status_code == 200
    assert found.headers["Cache-Control"] == "no-store"
    listing = found.get_json()
    assert listing["total"] == 1
    assert listing["items"][0] == {
        "id": person.public_id, "display_name": person.display_name, "user_name": person.user_name,
        "birth_date": person.birth_date.isoformat(), "rpps": person.rpps, "population": person.population,
        "status": person.status, "roles": person.role_names}
    assert "Lucie" in person.display_name
    assert api.get("/identities", query_string={"q": "zzzznobody"}).get_json() == {"total": 0, "items": []}

    opened = api.post(f"/identities/{person.public_id}/cases", {"kind": "first_mie"})
    assert opened.status_code == 201, opened.get_json()
    case = opened.get_json()
    case_id = case["id"]
    assert opened.headers["Location"].endswith(f"{API}/cases/{case_id}")
    assert case["state"] == "opened" and case["kind"] == "first_mie" and case["identity_id"] == person.public_id
    assert case["opened_by"] == actor and case["identity_check"] is None and case["is_self"] is False
    [event] = events(session, "enrollment:case:opened")
    assert (event.actor, event.subject) == (actor, person.public_id)
    assert json.loads(event.details)["case"] == case_id

    detail = api.get(f"/identities/{person.public_id}").get_json()
    assert [c["id"] for c in detail["cases"]] == [case_id]
    assert detail["is_self"] is False and detail["mies"] == []
    assert detail["verification"] == {"level": "none", "level_label": "aucune vérification", "last_check": None}
    assert api.get(f"/cases/{case_id}").get_json() == case

    checked = api.post(f"/cases/{case_id}/document-check",
                       {**DOCUMENT, "last4": "12ab", "checked_at": "2026-01-10T09:30:00+01:00"})
    assert checked.status_code == 200, checked.get_json()
    check = checked.get_json()
    assert check["state"] == "identity_verified"
    assert check["identity_check"] == {
        "method": "face_to_face", "checked_at": "2026-01-10T08:30:00Z", "place": "Accueil RH",
        "document": {"type": "cni", "issuing_country": "FRA", "expiry_date": "2031-05-01", "last4": "12AB"}}
    [event] = events(session, "enrollment:identity:verified")
    assert (event.actor, event.subject) == (actor, person.public_id)
    verification = api.get(f"/identities/{person.public_id}").get_json()["verification"]
    assert verification == {"level": "substantial", "level_label": "substantiel", "last_check": {
        "method": "face_to_face", "checked_at": "2026-01-10T08:30:00Z", "case_id": case_id}}

    issued = api.post(f"/cases/{case_id}/activation-code")
    assert issued.status_code == 201, issued.get_json()
    assert issued.headers["Cache-Control"] == "no-store"
    sheet = issued.get_json()
    code = sheet["code"]
    assert re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){5}", code)
    assert sheet["activation_url"] == f"{rt.settings.issuer}/activation?code={code}"
    assert sheet["case_id"] == case_id
    expires_at = dt.datetime.fromisoformat(sheet["expires_at"])
    assert abs(expires_at - utcnow() - dt.timedelta(hours=rt.settings.activation_hours)) < dt.timedelta(minutes=1)
    [event] = events(session, "enrollment:activation_code:issued")
    assert (event.actor, event.subject) == (actor, person.public_id)
    # Shown once: neither the case nor the journal holds it.
    assert code not in api.get(f"/cases/{case_id}").get_data(as_text=True)
    assert not any(code.replace("-", "") in e.details or code in e.details for e in events(session, event.tag))
    assert case_state(session, case_id) == "mie_issued"

    # The person redeems it on /activation, in their own browser.
    browser = app.test_client()
    page = browser.get("/activation")
    token = CSRF_RE.search(page.get_data(as_text=True)).group(1)
    redeemed = browser.post("/activation", data={"csrf_token": token, "code": code})
    assert redeemed.status_code == 303, redeemed.get_data(as_text=True)
    session.expire_all()
    assert session.scalar(select(ActivationCode.used_at)) is not None
    assert len(events(session, "enrollment:activation_code:redeemed")) == 1


def test_cancel_a_case(api, session, officer, person):
    case_id = open_case(api, person)
    cancelled = api.post(f"/cases/{case_id}/cancel", {"reason": "  Personne  absente\x00 "})
    assert cancelled.status_code == 200, cancelled.get_json()
    body = cancelled.get_json()
    assert body["state"] == "cancelled" and body["closed_at"] is not None
    [event] = events(session, "enrollment:case:cancelled")
    assert event.actor == f"officer:{officer.user_name}" and event.subject == person.public_id
    assert json.loads(event.details)["reason"] == "Personne absente"
    again = assert_error(api.post(f"/cases/{case_id}/cancel", {"reason": "encore"}), 409, "transition_refused")
    assert again["state"] == "cancelled"
    assert_error(api.post(f"/cases/{case_id}/document-check", DOCUMENT), 409, "transition_refused")
    assert_error(api.post(f"/cases/{case_id}/cancel", {"reason": "   "}), 400, "missing_field", "reason")


def test_replacement_revokes_the_lost_mie(api, rt, session, person):
    from hospiconnect.authenticators import services as mie_services

    lost, _uri, _svg = mie_services.begin_totp(session, person, label="Vieux téléphone", actor="test", keys=rt.keys,
                                               issuer="Test")
    session.commit()
    detail = api.get(f"/identities/{person.public_id}").get_json()
    assert [(m["id"], m["type"], m["label"], m["status"]) for m in detail["mies"]] == [
        (lost.public_id, "totp", "Vieux téléphone", lost.status)]
    before = count(session, EnrollmentCase)
    unknown = api.post(f"/identities/{person.public_id}/cases", {"kind": "replacement", "lost_mie_id": "nope"})
    assert_error(unknown, 422, "invalid_lost_mie", "lost_mie_id")
    assert_error(api.post(f"/identities/{person.public_id}/cases", {"kind": "replacement"}), 422,
                 "invalid_lost_mie", "lost_mie_id")
    assert len(events(session, "enrollment:case:refused")) == 2
    wrong_kind = api.post(f"/identities/{person.public_id}/cases", {"kind": "first_mie", "lost_mie_id": lost.public_id})
    assert_error(wrong_kind, 400, "invalid_value", "lost_mie_id")
    assert count(session, EnrollmentCase) == before

    case_id = open_case(api, person, kind="replacement", lost_mie_id=lost.public_id)
    session.expire_all()
    assert session.get(Mie, lost.id).status == "revoked"
    case = api.get(f"/cases/{case_id}").get_json()
    assert case["kind"] == "replacement" and case["replaced_mie_id"] == lost.public_id
    assert len(events(session, "enrollment:lost_mie:revoked")) == 1


def test_issuing_before_the_check_is_refused(api, session, person):
    case_id = open_case(api, person)
    body = assert_error(api.post(f"/cases/{case_id}/activation-code", {}), 409, "transition_refused")
    assert body["state"] == "opened"
    assert count(session, ActivationCode) == 0


# --- authentication -------------------------------------------------------------------------------------


def test_missing_malformed_or_bad_token_is_refused(app, rt, session, tool, officer, person):
    url = f"/identities/{person.public_id}"
    missing = Api(app, None).get(url)
    assert_error(missing, 401, "invalid_token")
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="hospiconnect"'
    bad = Api(app, "not-a-token").get(url)
    assert_error(bad, 401, "invalid_token")
    assert bad.headers["WWW-Authenticate"] == 'Bearer realm="hospiconnect", error="invalid_token"'
    assert_error(Api(app, "x" * 5000).get(url), 401, "invalid_token")
    basic = app.test_client().get(API + url, headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert_error(basic, 400, "invalid_request")
    assert 'error="invalid_request"' in basic.headers["WWW-Authenticate"]
    assert_error(app.test_client().get(API + url, headers={"Authorization": "Bearer "}), 400, "invalid_request")
    # The refresh token of the tool is no access token.
    with rt.db.session() as s:
        grant = tokens.Grant(client_id=tool.client_id, identity_id=officer.id, session_id=None,
                             scope="openid enrollment", auth_time=utcnow(), acr="eidas2", amr=("mfa", "otp", "pwd"))
        refresh = tokens.issue(s, rt.keys, rt.settings, grant, access_scope="openid enrollment",
                               with_refresh=True).refresh_token
    assert_error(Api(app, refresh).get(url), 401, "invalid_token")
    # Unknown tokens are not journaled: nothing to attribute them to.
    assert events(session, "api:token:refused") == []


def test_revoked_or_expired_token_is_refused_and_journaled(app, rt, session, tool, officer, person):
    token = issue_token(rt, tool, officer)
    api = Api(app, token)
    assert api.get(f"/identities/{person.public_id}").status_code == 200
    with rt.db.session() as s:
        tokens.revoke(s, tokens.find_token(s, rt.keys, token, kind="access"))
    revoked = api.get(f"/identities/{person.public_id}")
    assert_error(revoked, 401, "invalid_token")
    assert 'error="invalid_token"' in revoked.headers["WWW-Authenticate"]
    [event] = events(session, "api:token:refused")
    assert event.actor == f"client:{tool.client_id}" and event.subject == officer.public_id
    assert json.loads(event.details)["reason"] == "invalid_token"

    expired = issue_token(rt, tool, officer)
    with rt.db.session() as s:
        row = tokens.find_token(s, rt.keys, expired, kind="access")
        row.expires_at = utcnow() - dt.timedelta(seconds=1)
    assert_error(Api(app, expired).get(f"/identities/{person.public_id}"), 401, "invalid_token")


def test_token_without_the_enrollment_scope_is_refused(app, rt, session, tool, officer, person):
    response = Api(app, issue_token(rt, tool, officer, scope="openid profile")).post(
        f"/identities/{person.public_id}/cases", {"kind": "first_mie"})
    assert_error(response, 403, "insufficient_scope")
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="hospiconnect", error="insufficient_scope", scope="enrollment"')
    assert count(session, EnrollmentCase) == 0
    [event] = events(session, "api:token:refused")
    assert json.loads(event.details)["reason"] == "insufficient_scope"


def test_token_of_someone_without_the_role_is_refused(app, rt, session, tool, person):
    response = Api(app, issue_token(rt, tool, person)).get("/identities", query_string={"q": "dupont"})
    body = assert_error(response, 403, "access_denied")
    assert body["reason"] == "not_officer"
    assert "rôle d'agent d'enrôlement" in body["message"]
    assert 'error="access_denied"' in response.headers["WWW-Authenticate"]
    assert json.loads(events(session, "api:token:refused")[0].details)["reason"] == "not_officer"


def test_token_without_two_factors_is_refused(app, rt, session, tool, officer, person):
    response = Api(app, issue_token(rt, tool, officer, amr=("pwd",))).post(
        f"/identities/{person.public_id}/cases", {"kind": "first_mie"})
    body = assert_error(response, 403, "insufficient_user_authentication")
    assert body["reason"] == "mfa_required"
    assert "second facteur" in body["message"]
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert f'max_age="{rt.settings.recent_mfa_minutes * 60}"' in challenge
    assert count(session, EnrollmentCase) == 0


def test_token_whose_second_factor_is_too_old_is_refused(app, rt, session, tool, officer, person):
    stale = issue_token(rt, tool, officer, minutes_ago=rt.settings.recent_mfa_minutes + 5)
    body = assert_error(Api(app, stale).post(f"/identities/{person.public_id}/cases", {"kind": "first_mie"}),
                        403, "insufficient_user_authentication")
    assert body["reason"] == "mfa_not_recent"
    assert count(session, EnrollmentCase) == 0
    recent = issue_token(rt, tool, officer, minutes_ago=rt.settings.recent_mfa_minutes - 1)
    assert Api(app, recent).post(f"/identities/{person.public_id}/cases", {"kind": "first_mie"}).status_code == 201


# --- separation of duties -------------------------------------------------------------------------------


def test_an_officer_cannot_enroll_themself(app, rt, session, api, tool, officer, other_officer):
    assert api.get(f"/identities/{officer.public_id}").get_json()["is_self"] is True
    refused = api.post(f"/identities/{officer.public_id}/cases", {"kind": "first_mie"})
    body = assert_error(refused, 403, "separation_of_duties")
    assert "Séparation des tâches" in body["message"]
    assert "WWW-Authenticate" not in refused.headers
    assert count(session, EnrollmentCase) == 0
    [event] = events(session, "enrollment:case:refused")
    assert json.loads(event.details)["reason"] == "separation_of_duties"

    # A colleague opens the officer's case: the officer still cannot check, issue or cancel it.
    colleague = Api(app, issue_token(rt, tool, other_officer))
    case_id = open_case(colleague, officer)
    assert api.get(f"/cases/{case_id}").get_json()["is_self"] is True
    assert_error(api.post(f"/cases/{case_id}/document-check", DOCUMENT), 403, "separation_of_duties")
    assert case_state(session, case_id) == "opened"
    assert colleague.post(f"/cases/{case_id}/document-check", DOCUMENT).status_code == 200
    assert_error(api.post(f"/cases/{case_id}/activation-code"), 403, "separation_of_duties")
    assert_error(api.post(f"/cases/{case_id}/cancel", {"reason": "erreur"}), 403, "separation_of_duties")
    assert case_state(session, case_id) == "identity_verified"
    assert count(session, ActivationCode) == 0
    refusals = [json.loads(e.details) for e in events(session, "enrollment:case:refused")]
    assert [r.get("event") for r in refusals[1:]] == ["issue_mie", "cancel"]
    assert len(events(session, "enrollment:identity:refused")) == 1


# --- bad input ------------------------------------------------------------------------------------------


def test_expired_document_is_refused_with_its_field(api, session, person):
    case_id = open_case(api, person)
    body = assert_error(api.post(f"/cases/{case_id}/document-check", {**DOCUMENT, "expiry_date": "2020-01-01"}),
                        422, "document_refused", "expiry_date")
    assert "Pièce expirée le 01/01/2020" in body["message"]
    assert case_state(session, case_id) == "opened"
    [event] = events(session, "enrollment:identity:refused")
    assert json.loads(event.details)["reason"] == "expired"
    for field, value in (("document_type", "carte-vitale"), ("issuing_country", "99100"), ("last4", "12345"),
                         ("expiry_date", "")):
        assert_error(api.post(f"/cases/{case_id}/document-check", {**DOCUMENT, field: value}), 422,
                     "document_refused", field)
    assert_error(api.post(f"/cases/{case_id}/document-check", {**DOCUMENT, "place": " \x00 "}), 422,
                 "document_refused", "place")
    future = (utcnow() + dt.timedelta(hours=1)).isoformat()
    assert_error(api.post(f"/cases/{case_id}/document-check", {**DOCUMENT, "checked_at": future}), 422,
                 "checked_at_in_future", "checked_at")
    assert case_state(session, case_id) == "opened"


def test_bad_input_never_fails_and_changes_nothing(api, session, person):
    case_id = open_case(api, person)
    cases, journal = count(session, EnrollmentCase), count(session, AuditEvent)
    check_url = f"/cases/{case_id}/document-check"
    open_url = f"/identities/{person.public_id}/cases"

    def raw(url: str, data: bytes | str, content_type: str = "application/json"):  # type: ignore[no-untyped-def]
        return api.post(url, data=data, headers={"Content-Type": content_type})

    assert_error(raw(open_url, "{not json"), 400, "invalid_json")
    assert_error(raw(open_url, "[1, 2]"), 400, "invalid_json")
    assert_error(raw(open_url, ""), 400, "invalid_json")
    assert_error(raw(open_url, b"\xff\xfe"), 400, "invalid_json")
    assert_error(raw(open_url, "[" * 100000 + "]" * 100000), 413, "payload_too_large")
    assert_error(raw(open_url, json.dumps({"kind": "first_mie", "pad": "x" * 20000})), 413, "payload_too_large")
    assert_error(raw(open_url, "kind=first_mie", "application/x-www-form-urlencoded"), 415, "unsupported_media_type")
    assert_error(raw(open_url, '{"kind": "first_mie"}', "text/plain"), 415, "unsupported_media_type")
    assert_error(api.post(open_url, {"kind": "first_mie", "admin": True}), 400, "unknown_field", "admin")
    assert_error(api.post(open_url, {}), 400, "missing_field", "kind")
    assert_error(api.post(open_url, {"kind": None}), 400, "missing_field", "kind")
    assert_error(api.post(open_url, {"kind": 1}), 400, "invalid_type", "kind")
    assert_error(api.post(open_url, {"kind": ["first_mie"]}), 400, "invalid_type", "kind")
    assert_error(api.post(open_url, {"kind": "x" * 1000}), 400, "too_long", "kind")
    assert_error(api.post(open_url, {"kind": "second"}), 400, "invalid_value", "kind")
    assert_error(raw(open_url, '{"kind": "first_mie", "lost_mie_id": 1e999}'), 400, "invalid_type", "lost_mie_id")
    assert_error(raw(open_url, "[" * 4000 + "]" * 4000), 400, "invalid_json")

    assert_error(api.post(check_url, {**DOCUMENT, "place": ["Accueil"]}), 400, "invalid_type", "place")
    assert_error(api.post(check_url, {**DOCUMENT, "expiry_date": 20310501}), 400, "invalid_type", "expiry_date")
    assert_error(api.post(check_url, {**DOCUMENT, "expiry_date": "31/02/2030"}), 400, "invalid_value",
                 "expiry_date")
    assert_error(api.post(check_url, {**DOCUMENT, "checked_at": "hier"}), 400, "invalid_value", "checked_at")
    assert_error(api.post(check_url, {**DOCUMENT, "place": "x" * 201}), 400, "too_long", "place")
    assert_error(api.post(check_url, {**DOCUMENT, "place": "Accueil \ud800"}), 400, "invalid_value", "place")
    assert_error(api.post(check_url, {k: v for k, v in DOCUMENT.items() if k != "last4"}), 400, "missing_field",
                 "last4")
    assert_error(api.post(check_url, {**DOCUMENT, "full_number": "123456789012"}), 400, "unknown_field",
                 "full_number")
    assert_error(api.post(f"/cases/{case_id}/activation-code", {"code": "ABCD"}), 400, "unknown_field", "code")
    assert_error(api.post(f"/cases/{case_id}/activation-code", data="x", headers={"Content-Type": "text/plain"}),
                 415, "unsupported_media_type")
    assert_error(api.post(f"/cases/{case_id}/cancel", {"reason": 3}), 400, "invalid_type", "reason")
    assert_error(api.post(f"/cases/{case_id}/cancel", {"reason": "x" * 301}), 400, "too_long", "reason")

    assert_error(api.get("/identities"), 400, "missing_field", "q")
    assert_error(api.get("/identities", query_string={"q": " \x00 "}), 400, "missing_field", "q")
    for limit in ("0", "51", "-1", "abc", "1e3", "²", "9" * 50):
        assert_error(api.get("/identities", query_string={"q": "dupont", "limit": limit}), 400, "invalid_value",
                     "limit")
    assert_error(api.get("/identities", query_string={"q": "dupont", "status": "active"}), 400,
                 "unknown_parameter", "status")
    assert api.get("/identities", query_string={"q": "x" * 5000}).status_code == 200
    assert api.get("/identities", query_string={"q": "dupont", "limit": "1"}).get_json()["total"] == 1

    wrong_method = api.client.put(f"{API}/cases/{case_id}/cancel", headers=api.headers)
    assert wrong_method.status_code == 405 and wrong_method.get_json()["message"]
    assert case_state(session, case_id) == "opened"
    assert count(session, EnrollmentCase) == cases
    assert count(session, AuditEvent) == journal


def test_unknown_ids_are_404(api, session, person):
    case_id = open_case(api, person)
    for identity_id in ("unknown", "x" * 300, "ab%00cd", "a b", case_id):
        assert_error(api.get(f"/identities/{identity_id}"), 404, "identity_not_found")
        assert_error(api.post(f"/identities/{identity_id}/cases", {"kind": "first_mie"}), 404, "identity_not_found")
    for unknown in ("nope", "x" * 300, person.public_id, "ab%00cd"):
        assert_error(api.get(f"/cases/{unknown}"), 404, "case_not_found")
        assert_error(api.post(f"/cases/{unknown}/document-check", DOCUMENT), 404, "case_not_found")
        assert_error(api.post(f"/cases/{unknown}/activation-code"), 404, "case_not_found")
        assert_error(api.post(f"/cases/{unknown}/cancel", {"reason": "x"}), 404, "case_not_found")
    assert api.client.get(f"{API}/nowhere", headers=api.headers).status_code == 404
    assert count(session, EnrollmentCase) == 1


def test_an_unauthenticated_call_learns_nothing_about_ids(app, person):
    anonymous = Api(app, None)
    assert_error(anonymous.get(f"/identities/{person.public_id}"), 401, "invalid_token")
    assert_error(anonymous.get("/identities/unknown"), 401, "invalid_token")
    assert_error(anonymous.post("/cases/unknown/cancel", {"reason": "x"}), 401, "invalid_token")


def test_unknown_route_and_wrong_method_under_the_api_answer_json_with_a_stable_code(client):
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.get_json()["error"] == "not_found"
    wrong = client.delete("/api/v1/openapi.json")
    assert wrong.status_code == 405
    assert wrong.get_json()["error"] == "method_not_allowed"
