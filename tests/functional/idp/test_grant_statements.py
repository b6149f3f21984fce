"""The token endpoint's grants read and write in few statements (hospiconnect.idp.tokens): a refresh or a code
is read with its identity, its SSO session and the signing key in one statement, spent and replaced in one
more, and the journal appended in one (PostgreSQL). These tests check that the short path decides as the long
one would, under concurrency too."""

from __future__ import annotations

import threading

from sqlalchemy import event, select

from hospiconnect.idp import keys as signing_keys
from hospiconnect.idp import tokens
from hospiconnect.idp.models import AuthorizationCode, SigningKey, Token
from tests.oidc_helpers import exchange, id_token_claims, jwt_header, refresh, sign_in, tokens_for

OFFLINE = "openid profile offline_access"


def _statements(rt, call):
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(rt.db.engine, "before_cursor_execute", count)
    try:
        result = call()
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", count)
    return result, seen


def test_a_refresh_grant_runs_three_statements_on_postgresql(client, rt, rp, person):
    # The code exchange read the client's registration, which is then kept (hospiconnect.idp.clients).
    body = tokens_for(client, rt, rp, person, scope=OFFLINE)
    response, statements = _statements(rt, lambda: refresh(client, rp, body["refresh_token"]))
    assert response.status_code == 200, response.get_json()
    # Read (token, identity, session, signing key) + rotate-and-insert + journal. SQLite has no data-modifying
    # CTE: the rotation, the insertion and the journal's two steps are separate statements there.
    expected = 3 if rt.db.engine.dialect.name == "postgresql" else 6
    assert len(statements) == expected, statements


def test_the_one_statement_read_of_a_refresh_token_matches_the_waiting_read(client, rt, rp, person):
    body = tokens_for(client, rt, rp, person, scope=OFFLINE)
    with rt.db.session() as s:
        quick = tokens.find_refresh_context(s, rt.keys, body["refresh_token"])
        assert quick is not None and quick.identity is not None and quick.sso is not None
        read_quickly = (quick.token.id, quick.identity.id, quick.sso.id, quick.signing_kid)
    with rt.db.session() as s:
        row = tokens.find_refresh_token_locked(s, rt.keys, body["refresh_token"])
        assert row is not None
        read_waiting = (row.id, row.identity_id, row.session_id, signing_keys.active_key(s, rt.keys, "ES256")[0])
    assert read_quickly == read_waiting and read_quickly[1] == person.id
    with rt.db.session() as s:
        assert tokens.find_refresh_context(s, rt.keys, body["access_token"]) is None  # not a refresh token
        assert tokens.find_refresh_context(s, rt.keys, "inconnu") is None


def test_the_one_statement_read_of_a_code_matches_the_waiting_read(client, rt, rp, person):
    sign_in(client, rt, rp, person)
    with rt.db.session() as s:
        code_id, session_id = s.execute(select(AuthorizationCode.id, AuthorizationCode.session_id)).one()
        kid = s.scalar(select(SigningKey.kid).where(SigningKey.alg == "RS256", SigningKey.retired_at.is_(None)))
    # Codes are found by the keyed hash of their value, which only the client holds: use the stored hash.
    with rt.db.session() as s:
        code_hash = s.get(AuthorizationCode, code_id).code_hash
        found = s.execute(tokens._code_context_statement(), {"code_hash": code_hash, "signing_alg": "RS256"}).one()
        read_quickly = (found[0].id, found[1].id, found[2].id, found[3])
    assert read_quickly == (code_id, person.id, session_id, kid)


def test_an_id_token_after_a_key_rotation_is_signed_with_the_new_key(client, rt, rp, person):
    body = tokens_for(client, rt, rp, person, scope=OFFLINE)
    before = jwt_header(body["id_token"])["kid"]
    with rt.db.session() as s:
        rotation = signing_keys.rotate(s, rt.keys, rt.settings, actor="test")
    response = refresh(client, rp, body["refresh_token"])
    assert response.status_code == 200, response.get_json()
    header = jwt_header(response.get_json()["id_token"])
    assert header["kid"] != before and header["kid"] in rotation["created"]
    assert id_token_claims(rt, response.get_json()["id_token"])["sub"] == person.public_id


def _concurrently(app, n, request):  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def run() -> None:
        test_client = app.test_client()
        barrier.wait()
        response = request(test_client)
        with lock:
            answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return answers


def test_one_refresh_token_presented_six_times_at_once_is_rotated_once(app, client, rt, rp, person):
    body = tokens_for(client, rt, rp, person, scope=OFFLINE)
    answers = _concurrently(app, 6, lambda c: refresh(c, rp, body["refresh_token"]))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] + [400] * 5, answers
    assert all(answer["error"] == "invalid_grant" for status, answer in answers if status == 400)
    with rt.db.session() as s:
        family = s.scalars(select(Token)).all()
    # Exactly one rotation happened (one new access and one new refresh token), and the reuse that lost the
    # race revoked the whole family, the winner's new tokens included (RFC 9700 §4.14.2).
    assert len(family) == 4 and all(t.revoked_at is not None for t in family)


def test_one_code_exchanged_six_times_at_once_gives_tokens_once(app, client, rt, rp, person):
    request, result = sign_in(client, rt, rp, person, scope=OFFLINE)
    answers = _concurrently(app, 6, lambda c: exchange(c, rp, result["code"], request.verifier))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] + [400] * 5, answers
    with rt.db.session() as s:
        issued = s.scalars(select(Token)).all()
    # One access and one refresh token were issued, then revoked by the second redemption (RFC 6749 §4.1.2).
    assert len(issued) == 2 and all(t.revoked_at is not None for t in issued)
