"""The enrollment state machine, pure: every (state, event) pair, every guard, the document check."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools

import pytest

from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.interfaces import DocumentRefused, TransitionRefused

# The expected table, written out independently of wf.TRANSITIONS: any pair absent here must be refused.
ALLOWED = {
    (wf.OPENED, wf.VERIFY_IDENTITY): wf.IDENTITY_VERIFIED,
    (wf.OPENED, wf.REJECT): wf.REJECTED,
    (wf.OPENED, wf.EXPIRE): wf.EXPIRED,
    (wf.OPENED, wf.CANCEL): wf.CANCELLED,
    (wf.IDENTITY_VERIFIED, wf.ISSUE_MIE): wf.MIE_ISSUED,
    (wf.IDENTITY_VERIFIED, wf.EXPIRE): wf.EXPIRED,
    (wf.IDENTITY_VERIFIED, wf.CANCEL): wf.CANCELLED,
    (wf.MIE_ISSUED, wf.ISSUE_MIE): wf.MIE_ISSUED,
    (wf.MIE_ISSUED, wf.ACTIVATE): wf.ACTIVATED,
    (wf.MIE_ISSUED, wf.EXPIRE): wf.EXPIRED,
    (wf.MIE_ISSUED, wf.CANCEL): wf.CANCELLED,
}
ALL_PAIRS = list(itertools.product(wf.STATES, wf.EVENTS))


def favourable(state: str, event: str, kind: str = wf.KIND_FIRST_MIE) -> wf.CaseFacts:
    """Facts that satisfy every guard of ``event`` (only the table can refuse)."""
    return wf.CaseFacts(state=state, kind=kind, identity_check_method=wf.METHOD_FACE_TO_FACE,
                        lost_mie_revoked=True, code_redeemed=True, past_expiry=event == wf.EXPIRE)


def test_the_module_table_is_the_expected_table() -> None:
    assert {pair: target for pair, (target, _) in wf.TRANSITIONS.items()} == ALLOWED


@pytest.mark.parametrize("kind", wf.KINDS)
@pytest.mark.parametrize(("state", "event"), [p for p in ALL_PAIRS if p in ALLOWED])
def test_allowed_transition(state: str, event: str, kind: str) -> None:
    assert wf.next_state(favourable(state, event, kind), event) == ALLOWED[(state, event)]


@pytest.mark.parametrize(("state", "event"), [p for p in ALL_PAIRS if p not in ALLOWED])
def test_refused_transition(state: str, event: str) -> None:
    with pytest.raises(TransitionRefused) as info:
        wf.next_state(favourable(state, event), event)
    assert info.value.state == state and info.value.event == event
    assert info.value.http_status == 409
    if state in wf.FINAL_STATES:
        assert "clos" in info.value.message
    else:
        assert "Impossible de" in info.value.message


def _with(facts: wf.CaseFacts, **changes: object) -> wf.CaseFacts:
    return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]


# (description, state, event, facts changes, words expected in the French message)
GUARD_REFUSALS = [
    ("verify without a method", wf.OPENED, wf.VERIFY_IDENTITY, {"identity_check_method": None}, "face à face"),
    ("verify by an unknown method", wf.OPENED, wf.VERIFY_IDENTITY, {"identity_check_method": "email"},
     "FranceConnect+"),
    ("replacement before revoking the lost MIE", wf.OPENED, wf.VERIFY_IDENTITY,
     {"kind": wf.KIND_REPLACEMENT, "lost_mie_revoked": False}, "révoqué"),
    ("verify after the deadline", wf.OPENED, wf.VERIFY_IDENTITY, {"past_expiry": True}, "expiré"),
    ("issue without identity check", wf.IDENTITY_VERIFIED, wf.ISSUE_MIE, {"identity_check_method": None},
     "Aucune vérification"),
    ("issue after the deadline", wf.IDENTITY_VERIFIED, wf.ISSUE_MIE, {"past_expiry": True}, "expiré"),
    ("reissue after the deadline", wf.MIE_ISSUED, wf.ISSUE_MIE, {"past_expiry": True}, "expiré"),
    ("activate face to face without the code", wf.MIE_ISSUED, wf.ACTIVATE, {"code_redeemed": False},
     "code d'activation"),
    ("activate without identity check", wf.MIE_ISSUED, wf.ACTIVATE, {"identity_check_method": None},
     "Aucune vérification"),
    ("activate after the deadline", wf.MIE_ISSUED, wf.ACTIVATE, {"past_expiry": True}, "expiré"),
    ("expire an opened case too early", wf.OPENED, wf.EXPIRE, {"past_expiry": False}, "pas encore"),
    ("expire a verified case too early", wf.IDENTITY_VERIFIED, wf.EXPIRE, {"past_expiry": False}, "pas encore"),
    ("expire an issued case too early", wf.MIE_ISSUED, wf.EXPIRE, {"past_expiry": False}, "pas encore"),
]


@pytest.mark.parametrize(("state", "event", "changes", "words"), [g[1:] for g in GUARD_REFUSALS],
                         ids=[g[0] for g in GUARD_REFUSALS])
def test_guard_refuses(state: str, event: str, changes: dict[str, object], words: str) -> None:
    facts = _with(favourable(state, event), **changes)
    with pytest.raises(TransitionRefused) as info:
        wf.next_state(facts, event)
    assert words in info.value.message


@pytest.mark.parametrize("kind", wf.KINDS)
def test_every_kind_needs_an_identity_check_before_issuing(kind: str) -> None:
    # There is no path from "opened" to "mie_issued" other than through "identity_verified".
    facts = favourable(wf.OPENED, wf.ISSUE_MIE, kind)
    with pytest.raises(TransitionRefused):
        wf.next_state(facts, wf.ISSUE_MIE)


def test_fcplus_case_activates_without_activation_code() -> None:
    facts = wf.CaseFacts(state=wf.MIE_ISSUED, identity_check_method=wf.METHOD_FCPLUS, code_redeemed=False)
    assert wf.next_state(facts, wf.ACTIVATE) == wf.ACTIVATED


@pytest.mark.parametrize("state", [wf.OPENED, wf.IDENTITY_VERIFIED, wf.MIE_ISSUED])
def test_cancel_needs_no_favourable_facts(state: str) -> None:
    facts = wf.CaseFacts(state=state, identity_check_method=None, past_expiry=True)
    assert wf.next_state(facts, wf.CANCEL) == wf.CANCELLED


def test_reject_needs_no_favourable_facts() -> None:
    facts = wf.CaseFacts(state=wf.OPENED, identity_check_method=None, past_expiry=True)
    assert wf.next_state(facts, wf.REJECT) == wf.REJECTED


@pytest.mark.parametrize(("field", "value"), [("state", "limbo"), ("kind", "other")])
def test_unknown_vocabulary_is_a_programming_error(field: str, value: str) -> None:
    with pytest.raises(ValueError):
        wf.next_state(_with(wf.CaseFacts(state=wf.OPENED), **{field: value}), wf.CANCEL)
    with pytest.raises(ValueError):
        wf.next_state(wf.CaseFacts(state=wf.OPENED), "teleport")


# --- Document check ---------------------------------------------------------------------------------------

TODAY = dt.date(2026, 11, 27)
GOOD_DOC = {"document_type": "cni", "issuing_country": "FRA", "expiry_date": dt.date(2030, 1, 1), "last4": "AB12"}


@pytest.mark.parametrize("doc_type", wf.DOCUMENT_TYPES)
def test_every_document_type_is_accepted(doc_type: str) -> None:
    check = wf.check_document(**{**GOOD_DOC, "document_type": doc_type.upper()}, today=TODAY)
    assert check.document_type == doc_type


def test_document_is_normalised() -> None:
    check = wf.check_document(document_type=" Passport ", issuing_country="fr", expiry_date=TODAY,
                              last4=" ab 12", today=TODAY)
    assert check == wf.DocumentCheck("passport", "FR", TODAY, "AB12")


@pytest.mark.parametrize(("changes", "field", "reason"), [
    ({"expiry_date": TODAY - dt.timedelta(days=1)}, "expiry_date", "expired"),
    ({"expiry_date": None}, "expiry_date", "missing_expiry"),
    ({"document_type": "library_card"}, "document_type", "unknown_type"),
    ({"document_type": ""}, "document_type", "unknown_type"),
    ({"issuing_country": "France"}, "issuing_country", "bad_country"),
    ({"issuing_country": "F1"}, "issuing_country", "bad_country"),
    ({"last4": "123"}, "last4", "bad_last4"),
    ({"last4": "123456789"}, "last4", "bad_last4"),
    ({"last4": "12-4"}, "last4", "bad_last4"),
], ids=["expired", "no-expiry", "unknown-type", "empty-type", "country-name", "country-digit", "last4-short",
        "full-number", "last4-punct"])
def test_document_refused(changes: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(DocumentRefused) as info:
        wf.check_document(**{**GOOD_DOC, **changes}, today=TODAY)  # type: ignore[arg-type]
    assert info.value.field == field and info.value.reason == reason
    if reason == "expired":
        assert "expirée le 26/11/2026" in info.value.message


@pytest.mark.parametrize("module", ["workflow", "interfaces"])
def test_workflow_stays_pure(module: str) -> None:
    # The state machine must be testable and reusable without Flask or a database.
    import ast
    from pathlib import Path

    import hospiconnect.enrollment as package

    source = (Path(package.__file__).parent / f"{module}.py").read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    allowed = {"__future__", "dataclasses", "datetime", "typing", "hospiconnect.errors",
               "hospiconnect.enrollment.interfaces"}
    assert imported <= allowed, imported - allowed
