"""The SCIM 2.0 API (/scim/v2) driven through the Flask test client: authentication, create, read, list with
filters, sort and pages, replace, modify, ETags, the refusal of DELETE and the discovery endpoints."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from hospiconnect.apitokens.services import create_token, revoke_token
from hospiconnect.audit.models import AuditEvent
from hospiconnect.directory import services
from hospiconnect.directory.models import Identity
from tests.factories import create_identity, make_rpps

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
HC = "urn:hospiconnect:scim:schemas:extension:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
USERS = "/scim/v2/Users"

FAMILY_NAMES = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand"]


# --- helpers ------------------------------------------------------------------------------------------------

@pytest.fixture()
def tokens(rt, session):  # type: ignore[no-untyped-def]
    _, write = create_token(session, rt.keys, name="rh-paie", scopes=["scim"], actor="test")
    _, read = create_token(session, rt.keys, name="lecture", scopes=["scim:read"], actor="test")
    session.commit()
    return SimpleNamespace(write=write, read=read)


@pytest.fixture()
def w(tokens) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Headers of the read-write token."""
    return {"Authorization": f"Bearer {tokens.write}"}


def user_body(n: int = 0, **extension: Any) -> dict[str, Any]:
    """A complete SCIM User for person number ``n`` (distinct names, so no homonyms)."""
    hc: dict[str, Any] = {
        "birthFamilyName": FAMILY_NAMES[n], "givenNames": "Claire Marie", "birthDate": "1985-04-12",
        "birthPlace": "75056", "birthCountry": "99100", "gender": "female", "contractType": "permanent",
        "startDate": "2020-01-01", "establishments": ["750712184"], "units": ["CARDIO"], "roles": ["ide"],
    }
    hc.update(extension)
    return {
        "schemas": [CORE, HC],
        "userName": f"agent{n}",
        "externalId": f"RH-{n:04d}",
        "emails": [{"value": f"agent{n}@chu-exemple.fr", "type": "work", "primary": True}],
        HC: hc,
    }


def patch_body(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def create(client, headers: dict[str, str], n: int = 0,  # type: ignore[no-untyped-def]
           **extension: Any) -> dict[str, Any]:
    response = client.post(USERS, json=user_body(n, **extension), headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def assert_scim_error(response, status: int,  # type: ignore[no-untyped-def]
                      scim_type: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/scim+json"
    body = response.json
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"]
    return body


def stored(rt, public_id: str) -> Identity:  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return s.scalars(select(Identity).where(Identity.public_id == public_id)).one()


def events(rt, tag: str | None = None) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        stmt = select(AuditEvent).order_by(AuditEvent.seq)
        if tag:
            stmt = stmt.where(AuditEvent.tag == tag)
        return list(s.scalars(stmt))


def identity_count(rt) -> int:  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return s.scalar(select(func.count(Identity.id))) or 0


# --- authentication -----------------------------------------------------------------------------------------------

def test_missing_token_is_401_with_a_bearer_challenge(client, tokens) -> None:  # type: ignore[no-untyped-def]
    response = client.get(USERS)
    body = assert_scim_error(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="scim"'
    assert "jeton" in body["detail"].lower()


@pytest.mark.parametrize("authorization", [
    "Bearer hcp_pas-un-vrai-jeton", "Bearer ", "Basic dXNlcjpwYXNz", "hcp_sans-schema", "Bearer " + "x" * 500,
])
def test_wrong_token_is_401_and_says_nothing_more(client, tokens,  # type: ignore[no-untyped-def]
                                                  authorization: str) -> None:
    missing = client.get(USERS).json
    response = client.get(USERS, headers={"Authorization": authorization})
    body = assert_scim_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert body == missing  # no hint whether such a token exists


def test_revoked_token_is_401(rt, session, client, tokens, w) -> None:  # type: ignore[no-untyped-def]
    assert client.get(USERS, headers=w).status_code == 200
    revoke_token(session, name="rh-paie", actor="test")
    session.commit()
    body = assert_scim_error(client.get(USERS, headers=w), 401)
    assert body["detail"] == "Jeton d'accès absent ou invalide."


def test_read_only_token_reads_but_cannot_write(rt, client, tokens) -> None:  # type: ignore[no-untyped-def]
    read = {"Authorization": f"Bearer {tokens.read}"}
    assert client.get(USERS, headers=read).status_code == 200
    response = client.post(USERS, json=user_body(), headers=read)
    assert_scim_error(response, 403)
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert identity_count(rt) == 0
    refused = events(rt, "api:token:refused")
    assert [(e.actor, e.outcome) for e in refused] == [("api_token:lecture", "refused")]


def test_token_use_is_recorded(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    client.get(USERS, headers=w)
    from hospiconnect.apitokens.models import ApiToken

    with rt.db.session() as s:
        token = s.scalars(select(ApiToken).where(ApiToken.name == "rh-paie")).one()
        assert token.last_used_at is not None


# --- create -------------------------------------------------------------------------------------------------------

def test_create_returns_201_location_etag_and_journals(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    response = client.post(USERS, json=user_body(rpps=make_rpps(7), usageName="Durand"), headers=w)
    assert response.status_code == 201
    assert response.mimetype == "application/scim+json"
    user = response.json
    assert response.headers["Location"] == user["meta"]["location"] == f"http://localhost{USERS}/{user['id']}"
    assert response.headers["ETag"] == user["meta"]["version"] == 'W/"1"'
    assert user["schemas"] == [CORE, ENTERPRISE, HC]
    assert user["userName"] == "agent0"
    assert user["externalId"] == "RH-0000"
    assert user["name"] == {"familyName": "Durand", "givenName": "Claire", "formatted": "Claire Marie Durand"}
    assert user["displayName"] == "Claire Durand"
    assert user["emails"] == [{"value": "agent0@chu-exemple.fr", "type": "work", "primary": True}]
    assert user["active"] is True
    assert user[ENTERPRISE] == {"employeeNumber": "RH-0000", "organization": "750712184", "department": "CARDIO"}
    ext = user[HC]
    assert ext["birthFamilyName"] == "Martin" and ext["usageName"] == "Durand"
    assert ext["population"] == "rpps" and ext["status"] == "active"
    assert ext["birthDate"] == "1985-04-12" and ext["gender"] == "female"
    assert "homonymConfirmed" not in ext  # writeOnly
    assert user["meta"]["resourceType"] == "User" and user["meta"]["created"].endswith("Z")

    identity = stored(rt, user["id"])
    assert identity.rpps == ext["rpps"] and identity.status == "active"
    created = events(rt, "directory:identity:created")
    assert len(created) == 1
    assert created[0].actor == "api_token:rh-paie"
    assert created[0].subject == user["id"]
    assert created[0].client_ip == "127.0.0.1"


def test_create_accepts_scim_media_type_and_falls_back_to_core_names(client, w) -> None:  # type: ignore[no-untyped-def]
    body = user_body()
    del body[HC]["birthFamilyName"], body[HC]["givenNames"]
    body["name"] = {"familyName": "Lefèvre", "givenName": "Élodie"}
    response = client.post(USERS, data=json.dumps(body), headers={**w, "Content-Type": "application/scim+json"})
    assert response.status_code == 201, response.json
    assert response.json[HC]["birthFamilyName"] == "Lefèvre"
    assert response.json[HC]["givenNames"] == "Élodie"


def test_create_without_user_name_gets_one_suggested(client, w) -> None:  # type: ignore[no-untyped-def]
    body = user_body(3)
    del body["userName"]
    response = client.post(USERS, json=body, headers=w)
    assert response.status_code == 201
    assert response.json["userName"] == "cthomas"


def test_create_inactive_suspends_in_the_same_request(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    body = user_body()
    body["active"] = False
    user = client.post(USERS, json=body, headers=w).json
    assert user["active"] is False and user[HC]["status"] == "suspended"
    assert [e.tag for e in events(rt) if e.subject == user["id"]] == [
        "directory:identity:created", "directory:identity:suspended"]


def test_duplicate_is_409_and_homonym_confirmation_creates(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    first = create(client, w, 0)
    twin = user_body(0)
    twin["userName"], twin["externalId"] = "agent0bis", "RH-9999"
    twin[HC]["birthFamilyName"] = "MARTIN"  # same person after normalisation
    body = assert_scim_error(client.post(USERS, json=twin, headers=w), 409, "uniqueness")
    assert "homonymConfirmed" in body["detail"] and "agent0" in body["detail"]
    assert identity_count(rt) == 1

    twin[HC]["homonymConfirmed"] = True
    response = client.post(USERS, json=twin, headers=w)
    assert response.status_code == 201
    confirmed = events(rt, "directory:identity:homonym_confirmed")
    assert len(confirmed) == 1 and first["id"] in confirmed[0].details


def test_rpps_with_a_bad_key_is_400_and_writes_nothing(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    good = make_rpps(3)
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    before = len(events(rt))
    body = assert_scim_error(client.post(USERS, json=user_body(rpps=bad), headers=w), 400, "invalidValue")
    assert f"{HC}:rpps" in body["detail"] and "clé" in body["detail"]
    assert identity_count(rt) == 0
    assert len(events(rt)) == before


@pytest.mark.parametrize("change, attribute", [
    ({"userName": "agent0"}, "userName"),
    ({"externalId": "RH-0000"}, "externalId"),
])
def test_taken_identifiers_are_409(rt, client, w, change: dict, attribute: str) -> None:  # type: ignore[no-untyped-def]
    create(client, w, 0)
    body = user_body(1)
    body.update(change)
    assert_scim_error(client.post(USERS, json=body, headers=w), 409, "uniqueness")
    assert identity_count(rt) == 1


def test_rpps_taken_is_409(client, w) -> None:  # type: ignore[no-untyped-def]
    rpps = make_rpps(11)
    create(client, w, 0, rpps=rpps)
    assert_scim_error(client.post(USERS, json=user_body(1, rpps=rpps), headers=w), 409, "uniqueness")


def test_missing_required_fields_are_named(client, w) -> None:  # type: ignore[no-untyped-def]
    body = {"schemas": [CORE], "userName": "x"}
    detail = assert_scim_error(client.post(USERS, json=body, headers=w), 400, "invalidValue")["detail"]
    for name in ("birthFamilyName", "givenNames", "birthDate", "gender", "contractType"):
        assert name in detail


@pytest.mark.parametrize("raw, content_type, status, scim_type", [
    (b"{not json", "application/json", 400, "invalidSyntax"),
    (b"[1, 2]", "application/json", 400, "invalidSyntax"),
    (b"\xff\xfe\x00", "application/scim+json", 400, "invalidSyntax"),
    (b"[" * 100000, "application/json", 400, "invalidSyntax"),
    (b"", "application/json", 400, "invalidSyntax"),
    (json.dumps({"userName": "x"}).encode(), "application/json", 400, "invalidSyntax"),
    (json.dumps({"schemas": ["urn:exemple:inconnu"], "userName": "x"}).encode(), "application/json", 400,
     "invalidSyntax"),
    (json.dumps({"schemas": [CORE, "urn:exemple:inconnu"]}).encode(), "application/json", 400, "invalidSyntax"),
    (json.dumps({"schemas": CORE}).encode(), "application/json", 400, "invalidSyntax"),
    (b"userName=x", "application/x-www-form-urlencoded", 415, None),
])
def test_malformed_bodies(client, w, raw: bytes, content_type: str, status: int,  # type: ignore[no-untyped-def]
                          scim_type: str | None) -> None:
    assert_scim_error(client.post(USERS, data=raw, headers={**w, "Content-Type": content_type}), status, scim_type)


@pytest.mark.parametrize("change", [
    {"active": "peut-être"},
    {"userName": 42},
    {"emails": "a@b.fr"},
    {"emails": [{"type": "work"}]},
    {"name": "Martin"},
    {HC: {"birthFamilyName": "Mar\x00tin"}},
    {HC: {"birthFamilyName": "\ud800"}},
    {HC: {"roles": [{"value": 3}]}},
    {HC: {"birthDate": "1985-02-30"}},
    {HC: {"birthDate": ["1985-04-12"]}},
    {HC: {"gender": "licorne"}},
    {HC: {"establishments": ["123"]}},
    {"externalId": "RH-1", ENTERPRISE: {"employeeNumber": "RH-2"}},
])
def test_bad_values_are_400_never_500(rt, client, w, change: dict) -> None:  # type: ignore[no-untyped-def]
    body = user_body()
    for key, value in change.items():
        if key in (HC, ENTERPRISE) and isinstance(value, dict):
            body.setdefault(key, {}).update(value)
            if key == ENTERPRISE:
                body["schemas"] = [CORE, ENTERPRISE, HC]
        else:
            body[key] = value
    assert_scim_error(client.post(USERS, json=body, headers=w), 400, "invalidValue")
    assert identity_count(rt) == 0


# --- read ---------------------------------------------------------------------------------------------------------

def test_get_returns_the_user_with_its_etag(client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    response = client.get(f"{USERS}/{user['id']}", headers=w)
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"1"'
    assert response.json == user


@pytest.mark.parametrize("user_id", ["00000000-0000-0000-0000-000000000000", "agent0", "%00", "x" * 300, "RH-0000"])
def test_unknown_id_is_404(client, w, user_id: str) -> None:  # type: ignore[no-untyped-def]
    create(client, w)  # its userName and externalId are not ids
    assert_scim_error(client.get(f"{USERS}/{user_id}", headers=w), 404)


def test_if_none_match_gives_304(client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    url = f"{USERS}/{user['id']}"
    response = client.get(url, headers={**w, "If-None-Match": 'W/"1"'})
    assert response.status_code == 304 and response.get_data() == b""
    assert response.headers["ETag"] == 'W/"1"'
    assert client.get(url, headers={**w, "If-None-Match": "*"}).status_code == 304
    assert client.get(url, headers={**w, "If-None-Match": 'W/"7"'}).status_code == 200


def test_attributes_and_excluded_attributes(client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    url = f"{USERS}/{user['id']}"
    only = client.get(url, query_string={"attributes": f"userName,name.familyName,{HC}:roles"}, headers=w).json
    assert only == {"schemas": user["schemas"], "id": user["id"], "userName": "agent0",
                    "name": {"familyName": "Martin"}, HC: {"roles": ["ide"]}}
    without = client.get(url, query_string={"excludedAttributes": f"emails,{HC}:birthDate,id"}, headers=w).json
    assert "emails" not in without and "birthDate" not in without[HC] and without["id"] == user["id"]
    assert_scim_error(client.get(url, query_string={"attributes": 'emails[type eq "work"]'}, headers=w), 400,
                      "invalidValue")


def test_bad_attributes_parameter_on_a_write_changes_nothing(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    response = client.patch(f"{USERS}/{user['id']}", query_string={"attributes": "emails[type pr]"}, headers=w,
                            json=patch_body({"op": "replace", "path": "active", "value": False}))
    assert_scim_error(response, 400, "invalidValue")
    assert stored(rt, user["id"]).status == "active"
    assert events(rt, "directory:identity:suspended") == []


# --- list, filter, sort, pages -----------------------------------------------------------------------------------

@pytest.fixture()
def people(rt, session) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Four identities; returns user name → id."""
    elodie = create_identity(session, user_name="elefevre", external_id="RH-1", birth_family_name="Lefèvre-Durand",
                             given_names="Élodie", birth_date="1979-02-03", email="e.lefevre@chu-exemple.fr",
                             rpps=make_rpps(5), roles="medecin")
    claire = create_identity(session, user_name="cmartin", birth_family_name="Martin", usage_name="Bernard",
                             given_names="Claire Marie", birth_date="1985-04-12", email="c.martin@clinique.fr",
                             roles="ide")
    jean = create_identity(session, user_name="jdupont", birth_family_name="Dupont", given_names="Jean",
                           birth_date="1990-07-20", email="", roles="ide|cadre")
    anne = create_identity(session, user_name="aoneil", birth_family_name="O'Neil", given_names="Anne",
                           birth_date="2001-12-31", contract_type="interim", abroad=True, units="URG",
                           roles="secretariat", email="anne.oneil@chu-exemple.fr")
    services.suspend(session, jean, actor="test", reason="test")
    session.commit()
    return {i.user_name: i.public_id for i in (elodie, claire, jean, anne)}


def names(client, headers, **params: Any) -> list[str]:  # type: ignore[no-untyped-def]
    response = client.get(USERS, query_string=params, headers=headers)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["schemas"] == [LIST]
    assert body["itemsPerPage"] == len(body["Resources"])
    return [r["userName"] for r in body["Resources"]]


@pytest.mark.parametrize("filter_text, expected", [
    # eq (case-insensitive user names, normalised names: case, accents, hyphens)
    ('userName eq "ELEFEVRE"', ["elefevre"]),
    ('name.familyName eq "lefevre durand"', ["elefevre"]),
    ('name.familyName eq "bernard"', ["cmartin"]),  # the usage name is the family name in use
    ('name.familyName eq "martin"', []),
    (f'{HC}:birthFamilyName eq "MARTIN"', ["cmartin"]),
    ('name.givenName eq "elodie"', ["elefevre"]),
    (f'{HC}:givenNames eq "claire marie"', ["cmartin"]),
    ('externalId eq "RH-1"', ["elefevre"]),
    (f'{ENTERPRISE}:employeeNumber eq "RH-1"', ["elefevre"]),
    (f'{CORE}:userName eq "aoneil"', ["aoneil"]),
    ('emails eq "E.Lefevre@CHU-exemple.fr"', ["elefevre"]),
    ('active eq false', ["jdupont"]),
    (f'{HC}:status eq "suspended"', ["jdupont"]),
    (f'{HC}:population eq "rpps"', ["elefevre"]),
    ('roles eq "cadre"', ["jdupont"]),
    (f'{HC}:units eq "URG"', ["aoneil"]),
    (f'{HC}:establishments eq "750712184"', ["aoneil", "cmartin", "elefevre", "jdupont"]),
    ('externalId eq null', ["aoneil", "cmartin", "jdupont"]),
    # ne
    ('userName ne "elefevre"', ["aoneil", "cmartin", "jdupont"]),
    ('roles ne "ide"', ["aoneil", "elefevre"]),
    ('externalId ne "RH-1"', ["aoneil", "cmartin", "jdupont"]),
    # co, sw, ew
    ('emails co "@CHU-EXEMPLE"', ["aoneil", "elefevre"]),
    ('name.familyName co "upon"', ["jdupont"]),
    ('userName sw "c"', ["cmartin"]),
    ('name.givenName sw "ÉLO"', ["elefevre"]),
    ('name.familyName sw "o\'n"', ["aoneil"]),
    ('emails.value ew "clinique.fr"', ["cmartin"]),
    ('userName co "%"', []),  # LIKE wildcards are literal
    ('userName co "_"', []),
    # pr
    (f'{HC}:rpps pr', ["elefevre"]),
    ('emails pr', ["aoneil", "cmartin", "elefevre"]),
    (f'{HC}:birthPlace pr', ["cmartin", "elefevre", "jdupont"]),
    # gt, ge, lt, le
    (f'{HC}:birthDate gt "1990-07-20"', ["aoneil"]),
    (f'{HC}:birthDate ge "1990-07-20"', ["aoneil", "jdupont"]),
    (f'{HC}:birthDate lt "1985-04-12"', ["elefevre"]),
    (f'{HC}:birthDate le "1985-04-12"', ["cmartin", "elefevre"]),
    ('meta.created ge "2000-01-01T00:00:00Z"', ["aoneil", "cmartin", "elefevre", "jdupont"]),
    ('meta.lastModified lt "2000-01-01T00:00:00+01:00"', []),
    ('userName gt "d"', ["elefevre", "jdupont"]),
    # and, or, not, grouping, value filters
    ('roles eq "ide" and not (active eq false)', ["cmartin"]),
    (f'{HC}:contractType eq "interim" or {HC}:rpps pr', ["aoneil", "elefevre"]),
    (f'(roles eq "ide" or roles eq "medecin") and {HC}:birthDate lt "1986-01-01"', ["cmartin", "elefevre"]),
    (f'roles eq "ide" or roles eq "medecin" and {HC}:birthDate lt "1986-01-01"', ["cmartin", "elefevre", "jdupont"]),
    ('not (emails pr)', ["jdupont"]),
    (f'not ({HC}:rpps pr) and not (userName eq "aoneil")', ["cmartin", "jdupont"]),
    ('emails[type eq "work" and value co "@chu"]', ["aoneil", "elefevre"]),
    ('emails[type eq "home"]', []),
    ('emails[not (value ew ".fr")]', []),
    ('roles[value eq "cadre" or value eq "medecin"]', ["elefevre", "jdupont"]),
    ('emails.type eq "work" and emails.primary eq true', ["aoneil", "cmartin", "elefevre"]),
    ('meta.resourceType eq "User" and userName eq "aoneil"', ["aoneil"]),
])
def test_filters(client, w, people, filter_text: str, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert names(client, w, filter=filter_text, sortBy="userName") == expected


@pytest.mark.parametrize("filter_text, fragment", [
    ('foo eq "x"', "foo"),
    (f'{HC}:inconnu pr', "inconnu"),
    ('urn:exemple:autre:User:userName eq "x"', "userName"),
    ('displayName eq "Claire Martin"', "displayName"),
    ('userName eq bjensen', "guillemets"),
    ('userName eq "x" and', "incomplet"),
    (f'{HC}:birthDate co "1985"', "date"),
    (f'{HC}:birthDate gt "hier"', "AAAA-MM-JJ"),
    ('meta.created gt "0001-01-01T00:00:00+01:00"', "RFC 3339"),
    ('active eq "yes"', "active"),
    ('active gt 1', "active"),
    ('userName eq 12', "guillemets"),
    ('userName eq "\\u0000"', "nul"),
    ('emails[kind eq "work"]', "kind"),
    ('name[familyName eq "x"]', "multivalué"),
    ('roles[type eq "x"]', "type"),
])
def test_bad_filters_are_400_invalid_filter(client, w, people,  # type: ignore[no-untyped-def]
                                            filter_text: str, fragment: str) -> None:
    body = assert_scim_error(client.get(USERS, query_string={"filter": filter_text}, headers=w), 400, "invalidFilter")
    assert fragment in body["detail"]


def test_pages(client, w, people) -> None:  # type: ignore[no-untyped-def]
    page = client.get(USERS, query_string={"sortBy": "userName", "startIndex": 2, "count": 2}, headers=w).json
    assert (page["totalResults"], page["itemsPerPage"], page["startIndex"]) == (4, 2, 2)
    assert [r["userName"] for r in page["Resources"]] == ["cmartin", "elefevre"]
    assert names(client, w, sortBy="userName", startIndex=4, count=10) == ["jdupont"]
    assert names(client, w, startIndex=5) == []
    nothing = client.get(USERS, query_string={"count": 0}, headers=w).json
    assert nothing["totalResults"] == 4 and nothing["Resources"] == []
    assert len(names(client, w, startIndex=0, count=-3)) == 0  # below 1 means 1; negative count means 0
    assert len(names(client, w, startIndex=-7)) == 4
    assert len(names(client, w, startIndex=10**30)) == 0
    for bad in ({"count": "beaucoup"}, {"startIndex": "1.5"}):
        assert_scim_error(client.get(USERS, query_string=bad, headers=w), 400, "invalidValue")


def test_default_page_size_and_the_maximum(rt, client, w, people, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert client.get(USERS, headers=w).json["itemsPerPage"] == 4
    monkeypatch.setattr(rt, "settings", dataclasses.replace(rt.settings, scim_max_page_size=3))
    page = client.get(USERS, query_string={"count": 1000}, headers=w).json
    assert page["itemsPerPage"] == 3 and page["totalResults"] == 4
    config = client.get("/scim/v2/ServiceProviderConfig").json
    assert config["filter"]["maxResults"] == 3


@pytest.mark.parametrize("sort_by, order, expected", [
    ("userName", None, ["aoneil", "cmartin", "elefevre", "jdupont"]),
    ("userName", "descending", ["jdupont", "elefevre", "cmartin", "aoneil"]),
    ("name.familyName", "ascending", ["cmartin", "jdupont", "elefevre", "aoneil"]),
    ("name.familyName", "descending", ["aoneil", "elefevre", "jdupont", "cmartin"]),
    ("name.givenName", None, ["aoneil", "cmartin", "elefevre", "jdupont"]),
    (f"{HC}:birthDate", "descending", ["aoneil", "jdupont", "cmartin", "elefevre"]),
    ("meta.created", None, ["elefevre", "cmartin", "jdupont", "aoneil"]),
    ("meta.lastModified", "descending", ["jdupont", "aoneil", "cmartin", "elefevre"]),
    ("externalId", None, ["elefevre", "cmartin", "jdupont", "aoneil"]),  # missing values last
    ("externalId", "descending", ["aoneil", "jdupont", "cmartin", "elefevre"]),  # and first
    ("USERNAME", "DESCENDING", ["jdupont", "elefevre", "cmartin", "aoneil"]),
])
def test_sorting(client, w, people, sort_by: str, order: str | None,  # type: ignore[no-untyped-def]
                 expected: list[str]) -> None:
    params = {"sortBy": sort_by} | ({"sortOrder": order} if order else {})
    assert names(client, w, **params) == expected


@pytest.mark.parametrize("params", [{"sortBy": "displayName"}, {"sortBy": "couleur"}, {"sortBy": "emails[type pr]"},
                                    {"sortBy": "userName", "sortOrder": "up"}])
def test_bad_sort_is_400_invalid_value(client, w, people, params: dict) -> None:  # type: ignore[no-untyped-def]
    assert_scim_error(client.get(USERS, query_string=params, headers=w), 400, "invalidValue")


def test_search_endpoint(client, w, people) -> None:  # type: ignore[no-untyped-def]
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": 'roles eq "ide"',
            "sortBy": "userName", "startIndex": 1, "count": 1, "attributes": ["userName"]}
    page = client.post(f"{USERS}/.search", json=body, headers=w).json
    assert page["totalResults"] == 2
    assert page["Resources"] == [{"schemas": [CORE, ENTERPRISE, HC], "id": people["cmartin"], "userName": "cmartin"}]
    assert_scim_error(client.post(f"{USERS}/.search", json={"filter": "x pr"}, headers=w), 400, "invalidSyntax")
    for bad in ({"count": 1.5}, {"startIndex": True}, {"filter": 3}, {"sortBy": ["userName"]}, {"attributes": 4}):
        response = client.post(f"{USERS}/.search", headers=w, data='{"schemas": '
                               '["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], ' + json.dumps(bad)[1:])
        assert response.status_code == 400, bad
    huge = '{"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "count": 1e999}'
    assert_scim_error(client.post(f"{USERS}/.search", data=huge, headers={**w, "Content-Type": "application/json"}),
                      400, "invalidValue")


_fragments = st.sampled_from([
    "(", ")", "[", "]", "and", "or", "not", "eq", "ne", "co", "sw", "gt", "le", "pr", '"x"', '"\\u0000"', '"é"',
    "1", "true", "null", "userName", "emails", "name.familyName", "active", "meta.created", f"{HC}:birthDate",
    f"{HC}:roles", "roles", "value", "type", '"2020-01-01"', "displayName", "id",
])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_fragments, min_size=1, max_size=12).map(" ".join))
def test_no_filter_ever_gives_a_500(client, w, filter_text: str) -> None:  # type: ignore[no-untyped-def]
    response = client.get(USERS, query_string={"filter": filter_text, "sortBy": "userName"}, headers=w)
    assert response.status_code in (200, 400), (filter_text, response.json)
    if response.status_code == 400:
        assert response.json["scimType"] == "invalidFilter"


# --- replace (PUT) -------------------------------------------------------------------------------------------------

def test_put_replaces_what_it_sends(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    user[HC]["usageName"] = "Durand"
    user[HC]["roles"] = ["ide", "cadre"]
    user["emails"] = []
    user["id"] = "ignoré"  # readOnly: ignored
    user[HC]["population"] = "rpps"
    response = client.put(f"{USERS}/{user['meta']['location'].rsplit('/', 1)[1]}", json=user, headers=w)
    assert response.status_code == 200, response.json
    updated = response.json
    assert updated["name"]["familyName"] == "Durand"
    assert updated[HC]["roles"] == ["cadre", "ide"]
    assert "emails" not in updated
    assert updated[HC]["population"] == "local"
    assert response.headers["ETag"] == updated["meta"]["version"] == 'W/"2"'
    change = events(rt, "directory:identity:updated")
    assert len(change) == 1 and change[0].actor == "api_token:rh-paie"
    assert json.loads(change[0].details)["fields"] == ["usage_name", "email", "roles"]


def test_put_keeps_attributes_left_out(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w, rpps=make_rpps(2))
    core_only = {"schemas": [CORE], "userName": "agent0", "name": {"familyName": "Martin", "givenName": "Claire"}}
    response = client.put(f"{USERS}/{user['id']}", json=core_only, headers=w)
    assert response.status_code == 200
    assert response.json == user  # nothing changed, same version
    assert events(rt, "directory:identity:updated") == []


def test_put_family_name_changes_the_name_in_use(client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w, usageName="Durand")
    body = {"schemas": [CORE], "name": {"familyName": "Lambert", "givenName": "Chloé"}}
    updated = client.put(f"{USERS}/{user['id']}", json=body, headers=w).json
    assert updated[HC]["birthFamilyName"] == "Martin"  # the civil-status name is untouched
    assert updated[HC]["usageName"] == "Lambert"
    assert updated[HC]["givenNames"] == "Chloé Marie"


def test_put_active_false_suspends(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    user["active"] = False
    response = client.put(f"{USERS}/{user['id']}", json=user, headers=w)
    assert response.json["active"] is False
    assert stored(rt, user["id"]).status == "suspended"
    assert json.loads(events(rt, "directory:identity:suspended")[0].details)["reason"] == "SCIM active=false"


def test_put_with_stale_if_match_is_412_and_changes_nothing(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    url = f"{USERS}/{user['id']}"
    changed = dict(user, userName="autre")
    body = assert_scim_error(client.put(url, json=changed, headers={**w, "If-Match": 'W/"5"'}), 412)
    assert 'W/"1"' in body["detail"]
    assert stored(rt, user["id"]).user_name == "agent0"
    assert events(rt, "directory:identity:updated") == []
    response = client.put(url, json=changed, headers={**w, "If-Match": 'W/"1"'})
    assert response.status_code == 200 and response.json["userName"] == "autre"


def test_put_unknown_user_is_404(client, w) -> None:  # type: ignore[no-untyped-def]
    assert_scim_error(client.put(f"{USERS}/00000000-0000-0000-0000-000000000000", json=user_body(), headers=w), 404)


# --- modify (PATCH) ------------------------------------------------------------------------------------------------

def test_patch_active_false_suspends_and_true_reactivates(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    url = f"{USERS}/{user['id']}"
    response = client.patch(url, json=patch_body({"op": "replace", "path": "active", "value": False}), headers=w)
    assert response.status_code == 200
    assert response.json["active"] is False and response.json[HC]["status"] == "suspended"
    assert stored(rt, user["id"]).status == "suspended"
    suspended = events(rt, "directory:identity:suspended")
    assert len(suspended) == 1 and suspended[0].actor == "api_token:rh-paie"
    # Some clients send booleans as strings, and capitalise the operation.
    response = client.patch(url, json=patch_body({"op": "Replace", "value": {"active": "True"}}), headers=w)
    assert response.json["active"] is True
    assert len(events(rt, "directory:identity:reactivated")) == 1


def test_patch_add_roles_merges(client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    response = client.patch(f"{USERS}/{user['id']}", headers=w, json=patch_body(
        {"op": "add", "path": f"{HC}:roles", "value": ["medecin", "IDE"]},
        {"op": "add", "path": "roles", "value": [{"value": "cadre"}]},
    ))
    assert response.status_code == 200, response.json
    assert response.json[HC]["roles"] == ["cadre", "ide", "medecin"]


def test_patch_remove_usage_name(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w, usageName="Durand")
    response = client.patch(f"{USERS}/{user['id']}", headers=w,
                            json=patch_body({"op": "remove", "path": f"{HC}:usageName"}))
    assert response.status_code == 200
    assert "usageName" not in response.json[HC]
    assert response.json["name"]["familyName"] == "Martin"
    assert stored(rt, user["id"]).usage_name is None


def test_patch_core_paths(client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    response = client.patch(f"{USERS}/{user['id']}", headers=w, json=patch_body(
        {"op": "replace", "path": "name.familyName", "value": "Lefèvre"},
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "C.Lefevre@CHU-exemple.fr"},
        {"op": "replace", "path": "userName", "value": "clefevre"},
        {"op": "replace", "path": "externalId", "value": "RH-7"},
    ))
    assert response.status_code == 200, response.json
    updated = response.json
    assert updated[HC]["birthFamilyName"] == "Lefèvre"  # no usage name: the birth name is the name in use
    assert updated["emails"][0]["value"] == "c.lefevre@chu-exemple.fr"
    assert updated["userName"] == "clefevre"
    assert updated["externalId"] == updated[ENTERPRISE]["employeeNumber"] == "RH-7"
    assert updated["meta"]["version"] == 'W/"2"'  # one update for all the operations


def test_patch_without_path_and_extension_objects(client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    response = client.patch(f"{USERS}/{user['id']}", headers=w, json=patch_body(
        {"op": "replace", "value": {"name.givenName": "Chloé", HC: {"units": ["URG"]},
                                    f"{ENTERPRISE}:employeeNumber": "RH-42"}},
        {"op": "add", "path": HC, "value": {"roles": ["cadre"], "endDate": "2030-12-31"}},
    ))
    assert response.status_code == 200, response.json
    updated = response.json
    assert updated[HC]["givenNames"] == "Chloé Marie"
    assert updated[HC]["units"] == ["URG"]
    assert updated[HC]["roles"] == ["cadre", "ide"]
    assert updated[HC]["endDate"] == "2030-12-31"
    assert updated["externalId"] == "RH-42"


def test_patch_value_filters(client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w, roles=["ide", "cadre"])
    url = f"{USERS}/{user['id']}"
    response = client.patch(url, headers=w, json=patch_body({"op": "remove", "path": 'roles[value eq "cadre"]'}))
    assert response.json[HC]["roles"] == ["ide"]
    response = client.patch(url, headers=w, json=patch_body({"op": "remove", "path": 'emails[type eq "work"]'}))
    assert "emails" not in response.json
    # With no address left, a work address is created by its filter path.
    response = client.patch(url, headers=w, json=patch_body(
        {"op": "add", "path": 'emails[type eq "work"].value', "value": "nouvelle@chu-exemple.fr"}))
    assert response.json["emails"] == [{"value": "nouvelle@chu-exemple.fr", "type": "work", "primary": True}]
    assert_scim_error(client.patch(url, headers=w, json=patch_body(
        {"op": "replace", "path": 'emails[type eq "home"].value', "value": "x@y.fr"})), 400, "noTarget")
    assert_scim_error(client.patch(url, headers=w, json=patch_body(
        {"op": "remove", "path": 'roles[value eq "absent"]'})), 400, "noTarget")


@pytest.mark.parametrize("operation, scim_type", [
    ({"op": "replace", "path": "couleur", "value": "bleu"}, "invalidPath"),
    ({"op": "replace", "path": "name.familyName.x", "value": "x"}, "invalidPath"),
    ({"op": "replace", "path": 'emails[type eq "work"', "value": "x"}, "invalidPath"),
    ({"op": "replace", "path": f"{HC}:inconnu", "value": "x"}, "invalidPath"),
    ({"op": "replace", "path": "urn:exemple:autre:User:rpps", "value": "x"}, "invalidPath"),
    ({"op": "replace", "path": 'name[givenName eq "x"]', "value": "x"}, "invalidPath"),
    ({"op": "replace", "path": 42, "value": "x"}, "invalidPath"),
    ({"op": "replace", "value": {"couleur": "bleu"}}, "invalidPath"),
    ({"op": "replace", "path": "id", "value": "autre"}, "mutability"),
    ({"op": "replace", "path": "meta.created", "value": "2020-01-01T00:00:00Z"}, "mutability"),
    ({"op": "remove", "path": "meta"}, "mutability"),
    ({"op": "replace", "path": f"{HC}:population", "value": "rpps"}, "mutability"),
    ({"op": "replace", "path": f"{HC}:status", "value": "active"}, "mutability"),
    ({"op": "replace", "path": "displayName", "value": "X"}, "mutability"),
    ({"op": "replace", "value": {HC: {"status": "departed"}}}, "mutability"),
    ({"op": "remove", "path": "externalId"}, "mutability"),
    ({"op": "move", "path": "userName", "value": "x"}, "invalidSyntax"),
    ({"path": "userName", "value": "x"}, "invalidSyntax"),
    ("replace", "invalidSyntax"),
    ({"op": "replace", "path": "userName"}, "invalidValue"),
    ({"op": "remove"}, "noTarget"),
    ({"op": "replace", "path": "active", "value": "oui"}, "invalidValue"),
    ({"op": "replace", "path": "userName", "value": None}, "invalidValue"),
    ({"op": "replace", "path": "userName", "value": "Pas Valide!"}, "invalidValue"),
    ({"op": "replace", "path": f"{HC}:rpps", "value": "12345678901"}, "invalidValue"),
    ({"op": "remove", "path": f"{HC}:birthDate"}, "invalidValue"),
    ({"op": "replace", "value": "pas un objet"}, "invalidValue"),
])
def test_bad_patches_change_nothing(rt, client, w, operation: Any,  # type: ignore[no-untyped-def]
                                    scim_type: str) -> None:
    user = create(client, w)
    before = len(events(rt))
    response = client.patch(f"{USERS}/{user['id']}", headers=w, json=patch_body(
        {"op": "replace", "path": "userName", "value": "changement"}, operation))
    assert_scim_error(response, 400, scim_type)
    assert stored(rt, user["id"]).user_name == "agent0"  # the first, valid operation was not kept either
    assert len(events(rt)) == before


_patch_paths = st.sampled_from([
    "active", "userName", "externalId", "name", "name.familyName", "name.givenName", "name.formatted", "emails",
    "emails.value", 'emails[type eq "work"].value', 'emails[type eq "work"]', 'emails[value co "@"].primary',
    "roles", f"{HC}:roles", 'roles[value eq "ide"]', f"{HC}:rpps", f"{HC}:birthDate", f"{HC}:usageName",
    f"{HC}:homonymConfirmed", f"{ENTERPRISE}:employeeNumber", HC, ENTERPRISE, "meta.created", "id", "x", "emails[",
])
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["ide", "2020-01-01", "a@b.fr", "True", "Durand", "work", "\x00"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["value", "type", "primary", "familyName", "givenName", "roles", "active", "rpps",
                         "units", HC]), inner, max_size=3),
    max_leaves=8,
)
_operations = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "replace", "remove", "Replace", "copy"])},
    optional={"path": _patch_paths | st.text(max_size=15), "value": _json_values},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_operations, min_size=1, max_size=4))
def test_no_patch_ever_gives_a_500(client, w, operations: list) -> None:  # type: ignore[no-untyped-def]
    user_id = client.get(USERS, query_string={"filter": 'userName sw "agent"'}, headers=w).json["Resources"]
    if not user_id:
        user_id = [create(client, w)]
    response = client.patch(f"{USERS}/{user_id[0]['id']}", json=patch_body(*operations), headers=w)
    assert response.status_code in (200, 400, 409), (operations, response.get_data(as_text=True))
    if response.status_code != 200:
        assert response.json["schemas"] == [ERROR] and response.json["detail"]


def test_patch_rpps_error_names_the_attribute(client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    response = client.patch(f"{USERS}/{user['id']}", headers=w,
                            json=patch_body({"op": "add", "path": f"{HC}:rpps", "value": "10000000000"}))
    assert f"{HC}:rpps" in assert_scim_error(response, 400, "invalidValue")["detail"]


@pytest.mark.parametrize("body", [
    {"schemas": [CORE], "Operations": [{"op": "remove", "path": "title"}]},
    {"schemas": [PATCH_OP], "Operations": []},
    {"schemas": [PATCH_OP], "Operations": {"op": "remove"}},
    {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "roles", "value": "x"}] * 101},
])
def test_malformed_patch_messages(client, w, body: dict) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    assert_scim_error(client.patch(f"{USERS}/{user['id']}", json=body, headers=w), 400, "invalidSyntax")


def test_patch_if_match(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    url = f"{USERS}/{user['id']}"
    operation = patch_body({"op": "replace", "path": "active", "value": False})
    assert_scim_error(client.patch(url, json=operation, headers={**w, "If-Match": 'W/"2"'}), 412)
    assert stored(rt, user["id"]).status == "active"
    assert events(rt, "directory:identity:suspended") == []
    response = client.patch(url, json=operation, headers={**w, "If-Match": user["meta"]["version"]})
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"2"'
    # The old version no longer matches.
    assert_scim_error(client.patch(url, json=operation, headers={**w, "If-Match": 'W/"1"'}), 412)


def test_patch_duplicate_needs_homonym_confirmation(client, w) -> None:  # type: ignore[no-untyped-def]
    create(client, w, 0)
    other = create(client, w, 1)
    rename = {"op": "replace", "path": f"{HC}:birthFamilyName", "value": "Martin"}
    assert_scim_error(client.patch(f"{USERS}/{other['id']}", json=patch_body(rename), headers=w), 409, "uniqueness")
    response = client.patch(f"{USERS}/{other['id']}", headers=w, json=patch_body(
        rename, {"op": "add", "path": f"{HC}:homonymConfirmed", "value": True}))
    assert response.status_code == 200 and response.json[HC]["birthFamilyName"] == "Martin"


def test_departed_identity_cannot_be_reactivated(session, client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    identity = session.scalars(select(Identity).where(Identity.public_id == user["id"])).one()
    services.change_status(session, identity, "departed", actor="test", reason="test")
    session.commit()
    response = client.patch(f"{USERS}/{user['id']}", headers=w,
                            json=patch_body({"op": "replace", "path": "active", "value": True}))
    assert "partie" in assert_scim_error(response, 400, "invalidValue")["detail"]


# --- delete ---------------------------------------------------------------------------------------------------------

def test_delete_is_refused_with_an_explanation(rt, client, w) -> None:  # type: ignore[no-untyped-def]
    user = create(client, w)
    response = client.delete(f"{USERS}/{user['id']}", headers=w)
    body = assert_scim_error(response, 405)
    assert "jamais supprimées" in body["detail"] and "active=false" in body["detail"]
    assert response.headers["Allow"] == "GET, PUT, PATCH"
    assert stored(rt, user["id"]).status == "active"
    assert_scim_error(client.delete(f"{USERS}/{user['id']}"), 401)


# --- discovery ------------------------------------------------------------------------------------------------------

def test_service_provider_config(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/scim/v2/ServiceProviderConfig")
    assert response.status_code == 200 and response.mimetype == "application/scim+json"
    config = response.json
    assert config["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]
    assert config["patch"] == {"supported": True}
    assert config["filter"] == {"supported": True, "maxResults": 200}
    assert config["sort"] == {"supported": True} and config["etag"] == {"supported": True}
    assert config["bulk"]["supported"] is False and config["changePassword"] == {"supported": False}
    assert [s["type"] for s in config["authenticationSchemes"]] == ["oauthbearertoken"]


def test_resource_types(client) -> None:  # type: ignore[no-untyped-def]
    listing = client.get("/scim/v2/ResourceTypes").json
    assert listing["schemas"] == [LIST] and listing["totalResults"] == 1
    user_type = client.get("/scim/v2/ResourceTypes/User").json
    assert listing["Resources"] == [user_type]
    assert user_type["endpoint"] == "/Users" and user_type["schema"] == CORE
    assert {e["schema"] for e in user_type["schemaExtensions"]} == {ENTERPRISE, HC}
    assert_scim_error(client.get("/scim/v2/ResourceTypes/Group"), 404)


def test_schemas(client) -> None:  # type: ignore[no-untyped-def]
    listing = client.get("/scim/v2/Schemas").json
    assert [s["id"] for s in listing["Resources"]] == [CORE, ENTERPRISE, HC]
    for document in listing["Resources"]:
        assert client.get(f"/scim/v2/Schemas/{document['id']}").json == document
    hc = {a["name"]: a for a in client.get(f"/scim/v2/Schemas/{HC}").json["attributes"]}
    assert hc["population"]["mutability"] == "readOnly" and hc["status"]["mutability"] == "readOnly"
    assert hc["homonymConfirmed"] == {**hc["homonymConfirmed"], "type": "boolean", "mutability": "writeOnly",
                                      "returned": "never"}
    assert hc["roles"]["multiValued"] is True and hc["birthDate"]["required"] is True
    core = {a["name"]: a for a in client.get(f"/scim/v2/Schemas/{CORE}").json["attributes"]}
    assert [s["name"] for s in core["name"]["subAttributes"]] == ["familyName", "givenName", "formatted"]
    assert core["id"]["mutability"] == "readOnly" and core["userName"]["uniqueness"] == "server"
    enterprise = {a["name"] for a in client.get(f"/scim/v2/Schemas/{ENTERPRISE}").json["attributes"]}
    assert enterprise == {"employeeNumber", "organization", "department"}
    assert_scim_error(client.get("/scim/v2/Schemas/urn:exemple:inconnu"), 404)


def test_discovery_refuses_filters(client) -> None:  # type: ignore[no-untyped-def]
    for path in ("/scim/v2/Schemas", "/scim/v2/ResourceTypes", "/scim/v2/ServiceProviderConfig"):
        assert_scim_error(client.get(path, query_string={"filter": 'id eq "User"'}), 403)


def test_unknown_endpoints_answer_scim_errors(client, w) -> None:  # type: ignore[no-untyped-def]
    assert_scim_error(client.get("/scim/v2/Groups", headers=w), 404)
    assert_scim_error(client.patch(USERS, json={}, headers=w), 405)
