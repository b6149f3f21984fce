"""Operator commands that tie the parts together: init, keys rotate / rotate-kek, jobs run."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil

from click.testing import CliRunner
from sqlalchemy import select

from hospiconnect import crypto
from hospiconnect.cli import main
from hospiconnect.idp import keys as signing_keys
from hospiconnect.idp.models import SigningKey
from hospiconnect.runtime import Runtime
from hospiconnect.trajectory.models import TrajectorySnapshot
from tests.factories import create_identity


def _cli_runtime(rt, tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "keys.json"
    shutil.copy(rt.settings.secret_key_file, path)
    return Runtime(dataclasses.replace(rt.settings, secret_key_file=path))


def test_init_is_idempotent_and_creates_signing_keys(rt):
    runner = CliRunner()
    first = runner.invoke(main, ["init", "--json"], obj=rt)
    assert first.exit_code == 0, first.output
    created = json.loads(first.stdout)["signing_keys_created"]
    assert len(created) == 2
    second = runner.invoke(main, ["init", "--json"], obj=rt)
    assert json.loads(second.stdout)["signing_keys_created"] == []
    assert json.loads(second.stdout)["revision"] == rt.head_revision()


def test_keys_rotate_keeps_the_old_keys_published(rt, session, tmp_path):
    cli_rt = _cli_runtime(rt, tmp_path)
    with cli_rt.db.session() as s:
        signing_keys.ensure_keys(s, cli_rt.keys)
    before = {k["kid"] for k in signing_keys.public_jwks(session)["keys"]}
    result = CliRunner().invoke(main, ["keys", "rotate", "--json"], obj=cli_rt)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    after = {k["kid"] for k in signing_keys.public_jwks(session)["keys"]}
    assert before < after and set(data["created"]) == after - before


def test_rotate_kek_also_reencrypts_signing_keys(rt, session, tmp_path):
    cli_rt = _cli_runtime(rt, tmp_path)
    with cli_rt.db.session() as s:
        signing_keys.ensure_keys(s, cli_rt.keys)
    result = CliRunner().invoke(main, ["keys", "rotate-kek", "--json"], obj=cli_rt)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reencrypted"] == 2
    session.expire_all()
    rows = session.scalars(select(SigningKey)).all()
    assert all(r.private_jwk_enc.startswith("k2:") for r in rows)
    new_keys = crypto.load_keys(cli_rt.settings.secret_key_file)
    with cli_rt.db.session() as s:
        token = signing_keys.sign(s, new_keys, {"sub": "x"})
        assert signing_keys.verify(s, token)["sub"] == "x"


def test_jobs_run_applies_the_directory_lifecycle_and_is_idempotent(rt, session):
    person = create_identity(session, end_date="2026-11-01")
    runner = CliRunner()
    first = runner.invoke(main, ["jobs", "run", "--today", "2026-11-27", "--json"], obj=rt)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["directory"]["suspended"] == 1
    assert set(report) >= {"sessions_ended", "purged", "notifications", "backchannel_logout",
                           "enrollment_cases_expired", "trajectory"}
    # The day's trajectory snapshot, replaced (not added to) by the second run.
    assert report["trajectory"]["day"] == "2026-11-27" and report["trajectory"]["rows"] > 0
    snapshot_rows = session.execute(select(TrajectorySnapshot.indicator, TrajectorySnapshot.dimension,
                                           TrajectorySnapshot.value, TrajectorySnapshot.count)).all()
    assert snapshot_rows
    second = json.loads(runner.invoke(main, ["jobs", "run", "--today", "2026-11-27", "--json"], obj=rt).stdout)
    assert second["directory"]["suspended"] == 0
    assert second["trajectory"]["rows"] == report["trajectory"]["rows"]
    assert sorted(session.execute(select(TrajectorySnapshot.indicator, TrajectorySnapshot.dimension,
                                         TrajectorySnapshot.value, TrajectorySnapshot.count)).all()) == sorted(
        snapshot_rows)
    session.expire_all()
    assert session.get(type(person), person.id).status == "suspended"
    assert dt.date(2026, 11, 1) == session.get(type(person), person.id).end_date
