"""One activation code raced across two provider processes (« Activer mon moyen d'identification »).

The sheet's code typed by 16 browsers at once, half on each instance, is spent exactly once (one conditional
UPDATE decides, DESIGN.md "Atomicity across processes"): one browser goes on to choose its second factor, the
others get the page's "already used" refusal (400), never a 5xx. The winner's first authenticator code, then
sent from 16 copies of its browser at once, activates one MIE, once. The journal tells the same story, and
the refusals were counted against the IP in the Redis both instances share.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import TYPE_CHECKING

import pyotp
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie
from hospiconnect.db import utcnow
from hospiconnect.enrollment import services as enrollment
from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.models import EnrollmentCase
from hospiconnect.ratelimit import ip_key
from hospiconnect.runtime import Runtime
from tests.factories import create_identity
from tests.multiprocess.live import (
    Racer,
    ServerProcess,
    copy_browser,
    csrf_token_of,
    page,
    path_of,
    post_form,
    release_together,
    throttle_counter,
)

if TYPE_CHECKING:  # the fixtures' types, defined in conftest.py
    import redis

    from tests.multiprocess.conftest import Cluster

RACERS = 16
REUSED = "Ce code d&#39;activation a déjà été utilisé"
SEED = re.compile(r'<code id="totp-seed">([A-Z2-7 ]+)</code>')


def issued_code(session: Session, rt: Runtime) -> tuple[EnrollmentCase, str, str]:
    """A person whose identity an officer checked face to face and who was handed an activation sheet;
    return the case, the person's public id and the code of the sheet."""
    person = create_identity(session, birth_family_name="Dupont", given_names="Lucie")
    officer = create_identity(session, birth_family_name="Agent", roles="enrollment_officer")
    now = utcnow()
    actor = f"officer:{officer.user_name}"
    case = enrollment.open_case(session, person, kind=wf.KIND_FIRST_MIE, officer_identity_id=officer.id,
                                actor=actor)
    enrollment.record_document_check(session, case, document_type="passport", issuing_country="FRA",
                                     expiry_date=dt.date(now.year + 5, 1, 1), last4="9K3Z",
                                     place="Guichet DSI, bât. B", checked_at=now, officer_identity_id=officer.id,
                                     actor=actor, today=now.date())
    code = enrollment.issue_activation_code(session, rt.keys, case, actor=actor)
    session.commit()
    return case, person.public_id, code


def journal(session: Session, tag: str, subject: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.tag == tag, AuditEvent.subject == subject)))


def test_an_activation_code_raced_across_both_instances_activates_one_mie(cluster: Cluster, rt: Runtime,
                                                                          session: Session,
                                                                          shared_redis: redis.Redis) -> None:
    case, subject, code = issued_code(session, rt)

    def server_for(i: int) -> ServerProcess:
        return cluster.a if i % 2 == 0 else cluster.b

    # 16 browsers open the form, then send the sheet's code together.
    racers = []
    for i in range(RACERS):
        server, browser = server_for(i), requests.Session()
        token = csrf_token_of(page(browser, server, "/activation").text)
        racers.append(Racer(server, browser, lambda b=browser, s=server, t=token:
                            post_form(b, s, "/activation", {"code": code}, token=t)))
    results = release_together(racers)
    summary = [(name, r.status_code) for name, r in results]
    assert {name for name, _ in summary} == {"instance-a", "instance-b"}
    winners = [(racer, r) for racer, (_, r) in zip(racers, results) if r.status_code == 303]
    assert len(winners) == 1, summary
    odd = [(name, r.status_code, r.text[:300]) for name, r in results
           if r.status_code != 303 and not (r.status_code == 400 and REUSED in r.text)]
    assert not odd, f"every other browser must be told the code was already used: {odd}"
    winner, redeemed = winners[0]
    assert path_of(redeemed.headers["Location"]) == "/activation/moyen"
    for racer in racers:
        if racer is not winner:  # no activation step for them, on either instance
            for server in (cluster.a, cluster.b):
                assert page(racer.browser, server, "/activation/moyen").status_code == 400

    # The winner goes on, on the other instance: an authenticator application, shown once.
    other = cluster.b if winner.server is cluster.a else cluster.a
    choice = page(winner.browser, other, "/activation/moyen")
    assert choice.status_code == 200, choice.text[:500]
    setup = post_form(winner.browser, winner.server, "/activation/application", {},
                      token=csrf_token_of(choice.text))
    assert setup.status_code == 200, setup.text[:500]
    seed = SEED.search(setup.text)
    assert seed, setup.text[:1000]
    totp = pyotp.TOTP(seed.group(1).replace(" ", ""))
    token = csrf_token_of(setup.text)

    # Its first code, sent from 16 copies of its browser at once: one activation.
    first_code = totp.now()
    copies = [copy_browser(winner.browser) for _ in range(RACERS)]
    confirmations = release_together([
        Racer(server_for(i), browser, lambda b=browser, s=server_for(i):
              post_form(b, s, "/activation/application/confirmer", {"code": first_code}, token=token))
        for i, browser in enumerate(copies)])
    summary = [(name, r.status_code) for name, r in confirmations]
    activated = [r for _, r in confirmations if r.status_code == 303]
    assert len(activated) == 1, summary
    assert path_of(activated[0].headers["Location"]) == "/activation/suite"
    odd = [(name, r.status_code, r.text[:300]) for name, r in confirmations
           if r.status_code not in (303, 400) or (r.status_code == 400 and 'role="alert"' not in r.text)]
    assert not odd, f"every other confirmation must be refused by the page: {odd}"

    with rt.db.session() as s:
        assert s.get(EnrollmentCase, case.id).state == wf.ACTIVATED
        mies = s.scalars(select(Mie).where(Mie.identity_id == case.identity_id)).all()
        assert [(m.type, m.status, m.proofing_method) for m in mies] == [("totp", "active", wf.METHOD_FACE_TO_FACE)]
        assert len(journal(s, tags.ENROLLMENT_ACTIVATION_CODE_REDEEMED, subject)) == 1
        assert len(journal(s, tags.ENROLLMENT_CASE_ACTIVATED, subject)) == 1
        refused = journal(s, tags.ENROLLMENT_ACTIVATION_CODE_REFUSED, subject)
        assert sorted(json.loads(e.details)["reason"] for e in refused) == ["reused"] * (RACERS - 1)

    # Each refusal counted once against the IP, in the Redis both instances share.
    counter = throttle_counter(shared_redis, ip_key("127.0.0.1", "activation"))
    assert counter is not None and counter[0] == RACERS - 1
