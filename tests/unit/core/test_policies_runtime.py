"""The policy of a running process follows its file (hospiconnect.policies_runtime.PolicyHolder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hospiconnect.policies import DEFAULT_POLICY_PATH, PolicyError
from hospiconnect.policies_runtime import PolicyHolder, ReloadEvent

SHIPPED = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rewrite(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


@pytest.fixture()
def setup(tmp_path):
    path = tmp_path / "politique.yaml"
    path.write_text(SHIPPED, encoding="utf-8")
    clock, events = Clock(), []
    holder = PolicyHolder(path, check_seconds=5, on_change=events.append, clock=clock)
    return path, clock, events, holder


def test_a_valid_new_file_applies_after_the_interval(setup):
    path, clock, events, holder = setup
    first = holder.policy
    rewrite(path, SHIPPED.replace('name: "RIE 2026', 'name: "Nouvelle'))
    clock.now += 4
    assert holder.current() is first and events == []  # not looked at within the interval
    clock.now += 1
    assert holder.current().name.startswith("Nouvelle")
    [event] = events
    assert event.outcome == "reloaded" and event.previous_digest == first.digest
    assert event.details()["digest"] == holder.policy.digest and event.details()["pid"] == os.getpid()
    clock.now += 5
    assert holder.check() is None and len(events) == 1  # unchanged file: nothing more


def test_an_invalid_file_is_refused_once_and_the_policy_stays(setup):
    path, clock, events, holder = setup
    first = holder.policy
    rewrite(path, SHIPPED.replace("min_acr: eidas2", "min_acr: eidas7", 1))
    for _ in range(3):
        clock.now += 5
        assert holder.current() is first
    [event] = events
    assert event.outcome == "refused" and any("eidas7" in error for error in event.errors)
    assert event.details()["errors"] and "digest" not in event.details()
    # Deleted: refused once as well; restored identically: nothing to apply.
    path.unlink()
    clock.now += 5
    holder.check()
    assert [e.outcome for e in events] == ["refused", "refused"] and holder.policy is first
    path.write_text(SHIPPED, encoding="utf-8")
    clock.now += 5
    assert holder.check() is None and holder.policy is first


def test_a_touched_file_with_the_same_content_changes_nothing(setup):
    path, clock, events, holder = setup
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert holder.check(force=True) is None and events == []


def test_a_failing_journal_does_not_stop_the_reload(tmp_path):
    path = tmp_path / "politique.yaml"
    path.write_text(SHIPPED, encoding="utf-8")

    def broken(event: ReloadEvent) -> None:
        raise RuntimeError("base injoignable")

    holder = PolicyHolder(path, check_seconds=0, on_change=broken)
    rewrite(path, SHIPPED.replace('name: "RIE 2026', 'name: "Nouvelle'))
    assert holder.check().outcome == "reloaded" and holder.policy.name.startswith("Nouvelle")


def test_a_process_does_not_start_with_an_invalid_file(tmp_path):
    path = tmp_path / "politique.yaml"
    path.write_text("version: 1\n", encoding="utf-8")
    with pytest.raises(PolicyError):
        PolicyHolder(path)


def test_the_check_interval_is_a_setting():
    from hospiconnect.settings import Settings, SettingsError

    assert Settings.from_env({}).policy_check_seconds == 5
    assert Settings.from_env({"HOSPICONNECT_POLICY_CHECK_SECONDS": "0"}).policy_check_seconds == 0
    with pytest.raises(SettingsError):
        Settings.from_env({"HOSPICONNECT_POLICY_CHECK_SECONDS": "-1"})
