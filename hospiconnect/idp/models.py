"""Tables of the OpenID provider: clients, signing keys, codes, tokens, SSO sessions and interactions.

Secrets (client secrets, codes, tokens, session cookies) are stored only as keyed hashes; private
signing keys only encrypted (hospiconnect.crypto)."""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hospiconnect.db import Base, UTCDateTime, utcnow

#: The classes a client may have when no access policy is at hand. The access policy declares the classes in
#: use (``hospiconnect client add --class`` accepts those of the configured policy) and what each requires.
SENSITIVITY_CLASSES = ("health-data", "standard")


def _loads(text: str | None) -> list:  # type: ignore[type-arg]
    return list(json.loads(text)) if text else []


class Client(Base):
    __tablename__ = "oidc_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # The client's class: a class of the access policy (hospiconnect.idp.policy_gate).
    sensitivity: Mapped[str] = mapped_column(String(20), default="standard")
    # client_secret_basic | client_secret_post | private_key_jwt | none (public clients)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(30), default="client_secret_basic")
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    secret_set_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    jwks_json: Mapped[str | None] = mapped_column(Text)  # public keys for private_key_jwt
    redirect_uris_json: Mapped[str] = mapped_column(Text, default="[]")
    post_logout_redirect_uris_json: Mapped[str] = mapped_column(Text, default="[]")
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(500))
    scopes: Mapped[str] = mapped_column(String(500), default="openid profile email")
    # Optional claims profile (e.g. "psc" for delegation to Pro Santé Connect).
    profile: Mapped[str | None] = mapped_column(String(30))
    # OpenID Connect Dynamic Client Registration §2: NULL means ES256 (see hospiconnect.idp.oidc.id_token_alg).
    id_token_signed_response_alg: Mapped[str | None] = mapped_column(String(10))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def redirect_uris(self) -> list[str]:
        return _loads(self.redirect_uris_json)

    @property
    def post_logout_redirect_uris(self) -> list[str]:
        return _loads(self.post_logout_redirect_uris_json)

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def requires_two_factors(self) -> bool:
        """Fallback only: True for the ``health-data`` class. What a class requires at a given moment is the
        access policy's answer (hospiconnect.idp.policy_gate.needed_acr), which the provider asks."""
        return self.sensitivity == "health-data"


class SigningKey(Base):
    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(10))  # ES256 | RS256
    private_jwk_enc: Mapped[str] = mapped_column(Text)
    public_jwk_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Not None once a newer key signs; the key stays published until unpublish_after.
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    unpublish_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class SsoSession(Base):
    """The person's single sign-on session. ``id_hash`` is the keyed hash of the cookie value, which
    changes at every (re-)authentication; ``sid`` is the public session id put in ID tokens."""

    __tablename__ = "sso_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    auth_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Time of the last second-factor verification (None: password only so far).
    mfa_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    amr_json: Mapped[str] = mapped_column(String(200), default="[]")
    acr: Mapped[str] = mapped_column(String(20), default="eidas1")
    # Set when signed in with a recovery code: only the self-service page is reachable.
    recovery_only: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set when signed in through Pro Santé Connect: the national MIE used ("cps" or "e-cps"). PSC's amr cannot
    # tell it (a card gives "hwk" like a security key), and the access policy needs to know which MIE it was.
    national_mie: Mapped[str | None] = mapped_column(String(10))
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    end_reason: Mapped[str | None] = mapped_column(String(100))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))

    @property
    def amr(self) -> list[str]:
        return _loads(self.amr_json)


class SessionClient(Base):
    """A client that received tokens within an SSO session (back-channel logout targets)."""

    __tablename__ = "sso_session_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sso_sessions.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(100))
    first_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Interaction(Base):
    """An authorization request waiting for the person (login, second factor…). Stored server-side;
    the browser only holds its random id. ``reasons`` lists the failed checks (no_session, max_age,
    login_prompt, essential_acr, mfa_required…)."""

    __tablename__ = "oidc_interactions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100))
    request_json: Mapped[str] = mapped_column(Text)
    reasons_json: Mapped[str] = mapped_column(String(300), default="[]")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"))
    # Factors proven during this interaction, JSON list of amr values, and when the login finished.
    factors_json: Mapped[str] = mapped_column(String(200), default="[]")
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    consumed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def reasons(self) -> list[str]:
        return _loads(self.reasons_json)

    @property
    def factors(self) -> list[str]:
        return _loads(self.factors_json)


class AuthorizationCode(Base):
    __tablename__ = "oidc_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(100), index=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"))
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sso_sessions.id"))
    redirect_uri: Mapped[str] = mapped_column(String(500))
    scope: Mapped[str] = mapped_column(String(500))
    nonce: Mapped[str | None] = mapped_column(String(500))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(10), default="S256")
    claims_json: Mapped[str | None] = mapped_column(Text)
    auth_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    acr: Mapped[str] = mapped_column(String(20))
    amr_json: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # Set by the one conditional UPDATE that redeems the code; a second attempt finds it set.
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Token(Base):
    """Access and refresh tokens (opaque; stored as keyed hashes). Refresh tokens of one grant share a
    ``family_id``; presenting a used one revokes the whole family."""

    __tablename__ = "oidc_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # access | refresh
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    code_id: Mapped[int | None] = mapped_column(ForeignKey("oidc_codes.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(100), index=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("sso_sessions.id"), index=True)
    scope: Mapped[str] = mapped_column(String(500))
    auth_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    acr: Mapped[str] = mapped_column(String(20))
    amr_json: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    # Refresh tokens only: the end of the whole family, whatever the rotations.
    family_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)


class BackchannelDelivery(Base):
    """A logout token to deliver to a client's back-channel logout URI, retried with backoff."""

    __tablename__ = "oidc_backchannel_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100))
    uri: Mapped[str] = mapped_column(String(500))
    logout_token: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(300))


class UsedClientAssertion(Base):
    """A ``jti`` of a ``private_key_jwt`` client assertion already accepted (RFC 7523 §3, item 7)."""

    __tablename__ = "oidc_client_assertions"
    __table_args__ = (UniqueConstraint("client_id", "jti_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100))
    jti_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
