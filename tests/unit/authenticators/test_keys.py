"""Key-encryption key rotation: re-encryption of TOTP seeds and ``hospiconnect keys rotate-kek``."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from hospiconnect import crypto
from hospiconnect.authenticators import services, totp
from hospiconnect.authenticators.models import TotpCredential
from hospiconnect.cli import main
from hospiconnect.runtime import Runtime
from tests.factories import create_identity
from tests.unit.authenticators._mie_helpers import T0, db_throttle, events, keys  # noqa: F401
from tests.unit.authenticators.test_totp_service import enrol, step_time


@pytest.fixture()
def key_copy(settings, tmp_path):
    """A copy of the test key file, so that rotations do not touch the shared one."""
    path = tmp_path / "keys.json"
    shutil.copy(settings.secret_key_file, path)
    return path


def test_reencrypt_after_rotation_keeps_codes_working(session, key_copy, db_throttle):
    keys = crypto.load_keys(key_copy)
    person = create_identity(session)
    seeds = [enrol(session, keys, person, now=step_time(i))[1] for i in range(3)]
    assert services.secrets_by_key(session) == {"k1": 3}
    assert crypto.rotate_kek(key_copy) == "k2"
    rotated = crypto.load_keys(key_copy)
    # Before re-encryption the old kid still decrypts: codes keep working.
    now = step_time(10)
    services.verify_totp(session, person, totp.code_at(seeds[0], now), client_ip=None, throttle=db_throttle,
                         keys=rotated, now=now)
    assert services.reencrypt_secrets(session, rotated) == 3
    session.commit()
    assert services.secrets_by_key(session) == {"k2": 3}
    assert services.reencrypt_secrets(session, rotated) == 0  # nothing left to do: safe to run twice
    now = step_time(20)
    for seed in seeds:
        services.verify_totp(session, person, totp.code_at(seed, now), client_ip=None, throttle=db_throttle,
                             keys=rotated, now=now)


def test_revoked_seeds_are_skipped(session, key_copy):
    keys = crypto.load_keys(key_copy)
    person = create_identity(session)
    mie, _ = enrol(session, keys, person)
    services.remove(session, mie, actor="officer", allow_last=True)
    session.commit()
    crypto.rotate_kek(key_copy)
    assert services.reencrypt_secrets(session, crypto.load_keys(key_copy)) == 0


def test_a_tampered_seed_stops_the_reencryption(session, key_copy):
    keys = crypto.load_keys(key_copy)
    person = create_identity(session)
    a, _ = enrol(session, keys, person)
    b, _ = enrol(session, keys, person, now=step_time(1))
    token_a = session.get(TotpCredential, a.id).secret_enc
    session.execute(update(TotpCredential).where(TotpCredential.mie_id == b.id).values(secret_enc=token_a))
    session.commit()
    crypto.rotate_kek(key_copy)
    with pytest.raises(crypto.DecryptionFailed):
        services.reencrypt_secrets(session, crypto.load_keys(key_copy))


def test_cli_rotate_kek_json(rt, session, key_copy):
    keys = crypto.load_keys(key_copy)
    person = create_identity(session)
    enrol(session, keys, person)
    enrol(session, keys, person, now=step_time(1))
    cli_rt = Runtime(dataclasses.replace(rt.settings, secret_key_file=key_copy))
    assert cli_rt.keys.current_kek_id == "k1"
    result = CliRunner().invoke(main, ["keys", "rotate-kek", "--json"], obj=cli_rt)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == {"kid": "k2", "previous_kid": "k1", "key_ids": ["k1", "k2"], "reencrypted": 2,
                    "secrets_by_key": {"k2": 2}}
    assert crypto.load_keys(key_copy).current_kek_id == "k2"
    assert crypto.load_keys(rt.settings.secret_key_file).current_kek_id == "k1"  # the shared file is untouched
    session.expire_all()
    rotated = events(session, "system:kek:")
    assert [e.tag for e in rotated] == ["system:kek:rotated"]
    result = CliRunner().invoke(main, ["keys", "reencrypt", "--json"], obj=cli_rt)
    assert result.exit_code == 0 and json.loads(result.stdout)["reencrypted"] == 0
    human = CliRunner().invoke(main, ["keys", "rotate-kek"], obj=cli_rt)
    assert human.exit_code == 0 and "Nouvelle clé de chiffrement k3" in human.stdout


def test_cli_rotate_kek_without_key_file(rt, tmp_path):
    cli_rt = Runtime(dataclasses.replace(rt.settings, secret_key_file=tmp_path / "absent.json"))
    result = CliRunner().invoke(main, ["keys", "rotate-kek", "--json"], obj=cli_rt)
    assert result.exit_code == 1 and "hospiconnect init" in result.stderr
