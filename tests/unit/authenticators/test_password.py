"""Password hashing (argon2id, bounded concurrency, rehash) and the password policy (SECURITY.md item 16)."""

from __future__ import annotations

import threading
import time
import unicodedata

import pytest
from argon2 import PasswordHasher, Type

from hospiconnect.authenticators import password as pw


def test_hash_uses_argon2id_with_explicit_parameters():
    h = pw.hash_password("un mot de passe assez long")
    assert h.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert pw.verify(h, "un mot de passe assez long") == pw.Verification(True, None)
    assert pw.verify(h, "un mot de passe assez lonG") == pw.Verification(False, None)


def test_old_parameters_are_upgraded_on_success_only():
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash("ancien mot de passe")
    assert pw.verify(weak, "mauvais mot de passe").new_hash is None
    result = pw.verify(weak, "ancien mot de passe")
    assert result.ok and result.new_hash and result.new_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_malformed_hash_is_a_mismatch():
    assert not pw.verify("not a hash", "whatever").ok
    assert not pw.verify("", "whatever").ok


def test_unicode_forms_of_one_password_match():
    composed = unicodedata.normalize("NFC", "Ça déménage à Noël, vraiment")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert pw.verify(pw.hash_password(composed), decomposed).ok


def test_dummy_verification_does_the_same_work_as_a_real_one(monkeypatch):
    # Same cost means: one argon2 verification, against a hash with the configured parameters.
    # (Measured in time this would be a flaky test on a loaded machine; the work done is what matters.)
    calls: list[str] = []
    original = PasswordHasher.verify

    def counting(self, hash, password):  # type: ignore[no-untyped-def]
        calls.append(hash.split("$")[3])
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    real = pw.hash_password("quelque chose de long")
    pw.verify(real, "autre chose encore")
    pw.verify_dummy("autre chose encore")
    assert len(calls) == 2 and calls[0] == calls[1] == "m=19456,t=2,p=1"


def test_concurrent_hashes_are_bounded(monkeypatch):
    pw.configure(max_concurrent=2)
    active = peak = 0
    lock = threading.Lock()

    class CountingHasher(PasswordHasher):
        def hash(self, password, *, salt=None):  # type: ignore[no-untyped-def]
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            try:
                time.sleep(0.02)
                return super().hash(password, salt=salt)
            finally:
                with lock:
                    active -= 1

    monkeypatch.setattr(pw, "_hasher", CountingHasher(**pw.ARGON2_PARAMETERS))
    try:
        threads = [threading.Thread(target=pw.hash_password, args=("mot de passe numéro un",)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert peak == 2 and pw.max_concurrent() == 2
    finally:
        pw.configure()
    assert pw.max_concurrent() >= 1
    with pytest.raises(ValueError):
        pw.configure(max_concurrent=-1)


NAMES = ["Lefèvre-Durand", None, "Élodie Marie", "edurand"]
EST = "Centre Hospitalier de Saint-Nazaire"


def reasons(password, names=NAMES, establishment=EST):
    return [v.reason for v in pw.policy_violations(password, names=names, establishment_name=establishment)]


def test_a_good_passphrase_passes():
    assert reasons("cheval correct agrafe batterie") == []
    assert reasons("x" * 3 + "Tr0mb0ne!Vélo") == []  # no composition rules either way


@pytest.mark.parametrize("password, expected", [
    ("court", "too_short"),
    ("a1b2c3d4e5f", "too_short"),       # 11 characters
    ("é" * 3 + "x" * 129, "too_long"),
])
def test_length_bounds(password, expected):
    assert expected in reasons(password)


def test_length_is_counted_after_nfc():
    # 12 characters once composed, 14 code points decomposed: accepted.
    text = unicodedata.normalize("NFD", "éléphantbleu")
    assert len(text) == 14
    assert "too_short" not in reasons(text)
    assert "too_short" in reasons(unicodedata.normalize("NFD", "éléphantble"))
    assert reasons("p" + "a" * 0 + "mot-de-passe-très-long-" * 5 + "abc", names=[], establishment="")[:1] == []
    assert "too_long" not in reasons("ab" * 64, names=[], establishment="")  # 128 exactly


@pytest.mark.parametrize("password", ["1qaz2wsx3edc", "QazWsxEdcRfv", "LeaveMeAlone", "123456qwerty"])
def test_common_passwords_are_refused_case_insensitively(password):
    assert "common" in reasons(password)


@pytest.mark.parametrize("password", ["J'aime Lefevre 2024", "DURAND-du-jardin-42", "elodie.est.la.meilleure",
                                      "le-fè-vre-toujours", "mon login edurand ok", "marie marie marie 1"])
def test_the_persons_names_are_refused(password):
    assert "contains_name" in reasons(password)


def test_short_name_parts_are_ignored():
    assert "contains_name" not in reasons("le chat de yu mange", names=["Yu", "Li", "Dé"])


@pytest.mark.parametrize("password", ["hospitalier2026!", "Saint-Nazaire forever", "bienvenue au centre !"])
def test_the_establishments_name_is_refused(password):
    assert "contains_establishment" in reasons(password)


def test_short_establishment_words_are_ignored():
    assert "contains_establishment" not in reasons("saint de la journée", establishment="CH de Sète")


@pytest.mark.parametrize("password", ["aaaaaaaaaaaa", "123456789012", "abcabcabcabc", "azertyuiopqs",
                                      "zyxwvutsrqpo", "aaaaaaaaaaab", "98765432109876", "abcdabcdabcd"])
def test_obvious_repetitions_are_refused(password):
    assert "repetitive" in reasons(password, names=[], establishment="")


def test_every_reason_has_a_french_message():
    violations = pw.policy_violations("aaaa", names=[], establishment_name="")
    assert [v.reason for v in violations] == ["too_short", "repetitive"]
    assert violations[0].message.startswith("Le mot de passe doit comporter au moins 12")
    assert set(pw.MESSAGES) == {"too_short", "too_long", "common", "contains_name", "contains_establishment",
                                "repetitive"}
