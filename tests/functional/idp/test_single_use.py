"""Single use under concurrency: codes, refresh tokens and interactions are consumed by one conditional
UPDATE whose row count decides (DESIGN.md, atomicity across processes). Each thread has its own database
session, as two processes would."""

import threading

from sqlalchemy import select

from hospiconnect.idp import interactions, tokens
from hospiconnect.idp.models import AuthorizationCode, Token
from tests.oidc_helpers import auth_request, complete_interaction, interaction_id_of, sign_in, tokens_for


def _race(rt, attempt, n: int = 6) -> list[bool]:
    barrier = threading.Barrier(n)
    results: list[bool] = []
    lock = threading.Lock()

    def run() -> None:
        with rt.db.session() as s:
            barrier.wait()
            won = attempt(s)
        with lock:
            results.append(won)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_a_code_is_redeemed_once(client, rt, rp, person):
    sign_in(client, rt, rp, person)
    with rt.db.session() as s:
        code_id = s.scalar(select(AuthorizationCode.id))

    def attempt(s):
        return tokens.redeem_code(s, s.get(AuthorizationCode, code_id))

    assert sorted(_race(rt, attempt)) == [False] * 5 + [True]


def test_a_refresh_token_is_rotated_once(client, rt, rp, person):
    tokens_for(client, rt, rp, person, scope="openid offline_access")
    with rt.db.session() as s:
        token_id = s.scalar(select(Token.id).where(Token.kind == "refresh"))

    def attempt(s):
        return tokens.rotate(s, s.get(Token, token_id))

    assert sorted(_race(rt, attempt)) == [False] * 5 + [True]


def test_an_interaction_is_consumed_once(client, rt, rp, person):
    request = auth_request(rp)
    interaction_id = interaction_id_of(client.get("/authorize", query_string=request.params))
    complete_interaction(client, rt, interaction_id, person.id)
    assert sorted(_race(rt, lambda s: interactions.consume(s, interaction_id))) == [False] * 5 + [True]


def test_purge_of_expired_rows_keeps_what_reuse_detection_needs(client, rt, rp, person, session):
    import datetime as dt

    from hospiconnect.db import utcnow
    from hospiconnect.idp.models import Interaction

    tokens_for(client, rt, rp, person, scope="openid offline_access")
    request = auth_request(rp, prompt="login")
    client.get("/authorize", query_string=request.params)  # an interaction left unfinished
    now = utcnow()
    assert tokens.purge_expired(session, before=now) == {"tokens": 0, "codes": 0}
    assert interactions.purge_expired(session, before=now) == 0
    later = now + dt.timedelta(hours=13)
    assert tokens.purge_expired(session, before=later) == {"tokens": 2, "codes": 1}
    assert interactions.purge_expired(session, before=later) == 2
    session.commit()
    assert session.scalar(select(Interaction.id)) is None and session.scalar(select(Token.id)) is None
