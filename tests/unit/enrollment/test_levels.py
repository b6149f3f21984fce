"""The verification summary (pure): which check is the last, the level it gives, and each MIE's check."""

from __future__ import annotations

import datetime as dt

from hospiconnect.enrollment.levels import IdentityCheck, MieFacts, level_of, summarize

T0 = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc)


def mie(public_id: str, mie_type: str = "totp", **extra: object) -> MieFacts:
    values: dict[str, object] = {"label": f"MIE {public_id}", "status": "active", "created_at": T0}
    values.update(extra)
    return MieFacts(public_id=public_id, type=mie_type, **values)  # type: ignore[arg-type]


def test_no_check_means_no_verification():
    summary = summarize([], [mie("a", proofing_method=None)])
    assert summary.last_check is None
    assert (summary.level, summary.level_label, summary.verified) == ("none", "aucune vérification", False)
    assert summary.level_explanation.startswith("Aucune vérification d'identité")
    (line,) = summary.mies
    assert line.proofing_label is None and line.proofing_at is None


def test_face_to_face_check_gives_substantial_with_the_officer_and_the_document():
    check = IdentityCheck(method="face_to_face", checked_at=T0, officer="Anne AGENT (aagent)", place="Accueil RH",
                          document_type="cni", case="case-1")
    summary = summarize([check], [])
    assert summary.last_check == check
    assert (summary.level, summary.level_label) == ("substantial", "substantiel")
    assert check.verified_by == "Anne AGENT (aagent)"
    assert check.document_label == "carte nationale d'identité"
    assert check.method_label == "en face à face, sur pièce d'identité"


def test_fcplus_check_is_vouched_for_by_franceconnect_plus():
    check = IdentityCheck(method="fcplus", checked_at=T0, case="case-2")
    summary = summarize([check], [])
    assert summary.level_label == "substantiel"
    assert check.verified_by == "FranceConnect+" and check.method_label == "à distance, par FranceConnect+"
    assert check.document_label is None


def test_the_most_recent_check_is_the_last_one_whatever_the_order():
    older = IdentityCheck(method="fcplus", checked_at=T0 - dt.timedelta(days=400), case="old")
    newer = IdentityCheck(method="face_to_face", checked_at=T0, officer="B", case="new")
    assert summarize([newer, older], []).last_check == newer
    assert summarize([older, newer], []).last_check == newer


def test_an_unknown_method_gives_no_level():
    odd = IdentityCheck(method="email", checked_at=T0)
    assert level_of(odd) == "none" and level_of(None) == "none"
    assert summarize([odd], []).last_check is None


def test_an_mie_proofing_record_counts_but_does_not_hide_the_case_that_names_the_officer():
    naive = T0.replace(tzinfo=None)  # SQLite hands stored UTC timestamps back without a zone
    case_check = IdentityCheck(method="face_to_face", checked_at=T0, officer="Anne AGENT (aagent)", case="c")
    key = mie("k", "webauthn", proofing_method="face_to_face", proofing_at=naive,
              last_used_at=T0 + dt.timedelta(hours=2))
    summary = summarize([case_check], [key])
    assert summary.last_check == case_check
    (line,) = summary.mies
    assert (line.type_label, line.status_label) == ("Clé de sécurité", "Actif")
    assert line.proofing_label == "vérifiée en face à face au guichet" and line.proofing_at == naive
    assert line.last_used_at == T0 + dt.timedelta(hours=2)

    # Only the MIE's record (e.g. demo data): the level holds, the officer is unknown.
    alone = summarize([], [key])
    assert alone.level == "substantial"
    assert alone.last_check is not None and alone.last_check.verified_by is None and alone.last_check.case is None


def test_mie_lines_keep_their_order_and_say_their_status_in_french():
    summary = summarize([], [mie("p", "password", label="Mot de passe", status="active"),
                             mie("t", status="revoked", proofing_method="fcplus", proofing_at=T0),
                             mie("s", status="suspended"), mie("w", "webauthn", status="pending")])
    assert [m.public_id for m in summary.mies] == ["p", "t", "s", "w"]
    assert [m.status_label for m in summary.mies] == ["Actif", "Retiré", "Suspendu", "En attente"]
    assert summary.mies[1].proofing_label == "vérifiée par FranceConnect+"
    # A revoked MIE's check still happened: it gives the level.
    assert summary.level == "substantial"
