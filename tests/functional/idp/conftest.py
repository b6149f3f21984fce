"""Fixtures of the OpenID provider's functional tests: a person, clients of both classes."""

from __future__ import annotations

import pytest

from tests.factories import create_identity
from tests.oidc_helpers import add_second_factor, register


@pytest.fixture()
def person(session):
    """An active identity with a password only (no second factor)."""
    return create_identity(session)


@pytest.fixture()
def person_mfa(session):
    """An active identity with an active, proofed TOTP second factor."""
    identity = create_identity(session)
    add_second_factor(session, identity)
    return identity


@pytest.fixture()
def rp(session, rt):
    """A confidential client of the standard class (client_secret_basic)."""
    return register(session, rt, name="Messagerie", sensitivity="standard")


@pytest.fixture()
def health_rp(session, rt):
    """A confidential client that gives access to health data (two factors required)."""
    return register(session, rt, name="Dossier patient informatisé", sensitivity="health-data")
