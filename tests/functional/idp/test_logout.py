"""RP-initiated and back-channel logout (SECURITY.md items 9, 11, 19:
oidcc-rp-initiated-logout-bad-post-logout-redirect-uri, …-modified-id-token-hint)."""

import datetime as dt
import re
import threading
from urllib.parse import parse_qs

import pytest
from joserfc import jws
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from hospiconnect.audit.models import AuditEvent
from hospiconnect.db import utcnow
from hospiconnect.idp import login_session, logout
from hospiconnect.idp.models import BackchannelDelivery, SsoSession, Token
from tests.oidc_helpers import (
    ISSUER,
    POST_LOGOUT_URI,
    auth_request,
    id_token_claims,
    jwt_header,
    query_of,
    register,
    tokens_for,
)


def _signed_in(client, rt, rc, person):
    return tokens_for(client, rt, rc, person, scope="openid offline_access")


def _session_ended(session):
    session.expire_all()
    return all(s.ended_at is not None for s in session.scalars(select(SsoSession)))


# --- RP-initiated logout --------------------------------------------------------------------------------

def test_logout_with_hint_redirects_with_state_and_ends_everything(client, rt, rp, person, session):
    body = _signed_in(client, rt, rp, person)
    response = client.get("/logout", query_string={"id_token_hint": body["id_token"], "state": "etat-1",
                                                   "post_logout_redirect_uri": POST_LOGOUT_URI})
    assert response.status_code == 302
    assert response.headers["Location"] == POST_LOGOUT_URI + "?state=etat-1"
    assert "hc_sso=;" in response.headers["Set-Cookie"]  # cookie cleared
    assert _session_ended(session)
    assert all(t.revoked_at is not None for t in session.scalars(select(Token)))
    refused = client.post("/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                          headers=rp.basic())
    assert refused.get_json()["error"] == "invalid_grant"
    # Logout really ends the session: the next authorization asks for a login.
    client.set_cookie("hc_sso", "anything")
    request = auth_request(rp, prompt="none")
    assert query_of(client.get("/authorize", query_string=request.params).headers["Location"])["error"] == \
        "login_required"
    assert session.scalar(select(AuditEvent.id).where(AuditEvent.tag == "oidc:logout:completed"))


def test_logout_by_post_and_without_redirect_shows_a_page(client, rt, rp, person, session):
    body = _signed_in(client, rt, rp, person)
    response = client.post("/logout", data={"id_token_hint": body["id_token"]})
    assert response.status_code == 200 and "Vous êtes déconnecté" in response.get_data(as_text=True)
    assert _session_ended(session)


def test_bad_post_logout_redirect_uri_gets_a_page_and_no_redirect(client, rt, rp, person, session):
    body = _signed_in(client, rt, rp, person)
    for uri in ("https://attacker.example/", POST_LOGOUT_URI + "/x", rp.redirect_uri):
        response = client.get("/logout", query_string={"id_token_hint": body["id_token"],
                                                       "post_logout_redirect_uri": uri, "state": "s"})
        assert response.status_code == 400 and "Location" not in response.headers
        assert "adresse de retour" in response.get_data(as_text=True)
    # Without any way to know the client, a redirect is refused too.
    response = client.get("/logout", query_string={"post_logout_redirect_uri": POST_LOGOUT_URI})
    assert response.status_code == 400 and "Location" not in response.headers
    assert not _session_ended(session)
    reasons = [e.details for e in session.scalars(select(AuditEvent).where(AuditEvent.tag == "oidc:logout:refused"))]
    assert len(reasons) == 4


def test_modified_id_token_hint_is_refused(client, rt, rp, person, session):
    body = _signed_in(client, rt, rp, person)
    header, payload, signature = body["id_token"].split(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    response = client.get("/logout", query_string={"id_token_hint": f"{header}.{forged}.{signature}",
                                                   "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "s"})
    assert response.status_code == 400 and "Location" not in response.headers
    assert not _session_ended(session)


def test_hint_from_another_client_or_client_id_mismatch(client, rt, rp, person, session):
    other = register(session, rt, name="Autre application")
    body = _signed_in(client, rt, rp, person)
    response = client.get("/logout", query_string={"id_token_hint": body["id_token"], "client_id": other.client_id,
                                                   "post_logout_redirect_uri": POST_LOGOUT_URI})
    assert response.status_code == 400 and "Location" not in response.headers


def test_expired_hint_is_accepted(client, rt, rp, person, session):
    import time_machine

    body = _signed_in(client, rt, rp, person)
    with time_machine.travel(dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)):
        response = client.get("/logout", query_string={"id_token_hint": body["id_token"],
                                                       "post_logout_redirect_uri": POST_LOGOUT_URI})
    assert response.status_code == 302 and _session_ended(session)


def test_logout_without_hint_asks_for_confirmation(client, rt, rp, person, session):
    _signed_in(client, rt, rp, person)
    response = client.get("/logout", query_string={"client_id": rp.client_id,
                                                   "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "s2"})
    assert response.status_code == 200 and not _session_ended(session)
    page = response.get_data(as_text=True)
    assert "Se déconnecter de HospiConnect" in page
    assert "form-action 'self' https://rp.chu-exemple.fr" in response.headers["Content-Security-Policy"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    # Without the CSRF token nothing happens (a third-party page cannot sign people out).
    forged = client.post("/logout/confirm", data={"client_id": rp.client_id})
    assert forged.status_code == 400 and not _session_ended(session)
    confirmed = client.post("/logout/confirm", data={"csrf_token": token, "client_id": rp.client_id,
                                                     "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "s2"})
    assert confirmed.status_code == 303 and confirmed.headers["Location"] == POST_LOGOUT_URI + "?state=s2"
    assert _session_ended(session)


def test_logout_by_hint_sid_without_cookie(client, rt, rp, person, session):
    body = _signed_in(client, rt, rp, person)
    client.delete_cookie("hc_sso")
    response = client.get("/logout", query_string={"id_token_hint": body["id_token"]})
    assert response.status_code == 200 and _session_ended(session)


def test_logout_without_any_session(client, rp):
    response = client.get("/logout", query_string={"client_id": rp.client_id,
                                                   "post_logout_redirect_uri": POST_LOGOUT_URI, "state": "x"})
    assert response.status_code == 302 and response.headers["Location"] == POST_LOGOUT_URI + "?state=x"


# --- back-channel logout --------------------------------------------------------------------------------

class Receiver:
    """A relying party's back-channel logout endpoint on 127.0.0.1, failing the first ``fail`` times."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.received: list[dict] = []
        self.server = make_server("127.0.0.1", 0, self._app)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/backchannel-logout"

    def _app(self, environ, start_response):
        request = Request(environ)
        self.received.append({"content_type": request.content_type,
                              "form": {k: v for k, v in parse_qs(request.get_data(as_text=True)).items()}})
        if self.fail > 0:
            self.fail -= 1
            return Response("indisponible", status=503)(environ, start_response)
        return Response("", status=200, headers={"Cache-Control": "no-store"})(environ, start_response)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture()
def no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_backchannel_logout_token_is_delivered_at_logout(client, rt, session, person, no_proxy):
    with Receiver() as receiver:
        rc = register(session, rt, backchannel_logout_uri=receiver.uri)
        body = _signed_in(client, rt, rc, person)
        sid = id_token_claims(rt, body["id_token"])["sid"]
        response = client.get("/logout", query_string={"id_token_hint": body["id_token"]})
        assert response.status_code == 200
    assert len(receiver.received) == 1
    received = receiver.received[0]
    assert received["content_type"] == "application/x-www-form-urlencoded"
    token = received["form"]["logout_token"][0]
    header = jwt_header(token)
    assert header["typ"] == "logout+jwt" and header["alg"] == "ES256" and header["kid"]
    claims = id_token_claims(rt, token)  # signature verified against the published keys
    assert claims["iss"] == ISSUER and claims["aud"] == rc.client_id and claims["sub"] == person.public_id
    assert claims["sid"] == sid and claims["jti"] and claims["exp"] > claims["iat"]
    assert claims["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}
    assert "nonce" not in claims
    delivery = session.scalar(select(BackchannelDelivery))
    assert delivery.delivered_at is not None and delivery.attempts == 1
    assert session.scalar(select(AuditEvent.id).where(AuditEvent.tag == "oidc:backchannel:delivered"))


def test_backchannel_logout_is_retried_after_a_failure(client, rt, session, person, no_proxy):
    with Receiver(fail=1) as receiver:
        rc = register(session, rt, backchannel_logout_uri=receiver.uri)
        body = _signed_in(client, rt, rc, person)
        client.get("/logout", query_string={"id_token_hint": body["id_token"]})
        delivery = session.scalar(select(BackchannelDelivery))
        assert delivery.delivered_at is None and delivery.attempts == 1 and delivery.last_error == "HTTP 503"
        now = utcnow()
        # Not due yet: nothing is sent.
        assert logout.deliver_backchannel(session, now)["delivered"] == 0
        stats = logout.deliver_backchannel(session, now + dt.timedelta(seconds=16))
        assert stats == {"delivered": 1, "failed": 0, "abandoned": 0, "skipped": 0}
        # Delivered once: a later run sends nothing.
        assert logout.deliver_backchannel(session, now + dt.timedelta(hours=1))["delivered"] == 0
    assert len(receiver.received) == 2
    assert receiver.received[0]["form"]["logout_token"] == receiver.received[1]["form"]["logout_token"]
    session.expire_all()
    delivery = session.scalar(select(BackchannelDelivery))
    assert delivery.delivered_at is not None and delivery.attempts == 2


def test_backchannel_delivery_is_abandoned_after_the_last_attempt(client, rt, session, person):
    rc = register(session, rt, backchannel_logout_uri="https://rp.chu-exemple.fr/backchannel")
    _signed_in(client, rt, rc, person)
    sso = session.scalar(select(SsoSession))
    login_session.end(session, sso, reason="test", keys=rt.keys, settings=rt.settings)
    session.commit()
    calls = []

    def down(uri, fields, timeout):
        calls.append((uri, sorted(fields)))
        raise OSError("connexion refusée")

    when = utcnow()
    for delay in (0,) + logout.RETRY_DELAYS_SECONDS:
        when += dt.timedelta(seconds=delay + 1)
        logout.deliver_backchannel(session, when, http_post=down)
    assert len(calls) == logout.MAX_ATTEMPTS and calls[0] == ("https://rp.chu-exemple.fr/backchannel", ["logout_token"])
    assert logout.deliver_backchannel(session, when + dt.timedelta(days=1), http_post=down)["delivered"] == 0
    assert len(calls) == logout.MAX_ATTEMPTS
    delivery = session.scalar(select(BackchannelDelivery))
    assert delivery.attempts == logout.MAX_ATTEMPTS and "OSError" in delivery.last_error
    # Retries stop before the logout token expires.
    assert sum(logout.RETRY_DELAYS_SECONDS) < logout.LOGOUT_TOKEN_SECONDS


def test_only_clients_of_the_session_with_a_uri_are_notified(client, rt, session, person, monkeypatch):
    sent = []
    monkeypatch.setattr(logout, "urllib_post", lambda uri, fields, timeout: sent.append(uri) or 200)
    notified = register(session, rt, name="A", backchannel_logout_uri="https://a.chu-exemple.fr/bc")
    register(session, rt, name="B", backchannel_logout_uri="https://b.chu-exemple.fr/bc")  # never used
    plain = register(session, rt, name="C")
    _signed_in(client, rt, notified, person)
    body = _signed_in(client, rt, plain, person)  # the hint of another client of the same session
    client.get("/logout", query_string={"id_token_hint": body["id_token"]})
    deliveries = session.scalars(select(BackchannelDelivery)).all()
    assert [d.client_id for d in deliveries] == [notified.client_id]
    assert sent == ["https://a.chu-exemple.fr/bc"] and deliveries[0].delivered_at is not None
    assert jws.extract_compact(deliveries[0].logout_token.encode()).headers()["typ"] == "logout+jwt"
