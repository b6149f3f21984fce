"""Envelope encryption of secrets at rest (AES-256-GCM, key ids, rotation)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading

import pytest

from hospiconnect import crypto
from hospiconnect.crypto import (
    DecryptionFailed,
    KeyFileError,
    UnknownKeyId,
    decrypt,
    encrypt,
    generate_key_file,
    kid_of,
    load_keys,
    rotate_kek,
)


@pytest.fixture()
def key_file(tmp_path):
    path = tmp_path / "keys.json"
    generate_key_file(path)
    return path


def test_round_trip_and_format(key_file):
    keys = load_keys(key_file)
    token = encrypt(keys, b"JBSWY3DPEHPK3PXP", b"totp:1")
    kid, _, body = token.partition(":")
    assert kid == keys.current_kek_id == "k1" == kid_of(token)
    assert "=" not in body and "+" not in body and "/" not in body  # base64url without padding
    assert decrypt(keys, token, b"totp:1") == b"JBSWY3DPEHPK3PXP"


def test_nonces_differ_so_equal_plaintexts_do_not_show(key_file):
    keys = load_keys(key_file)
    assert encrypt(keys, b"same", b"a") != encrypt(keys, b"same", b"a")


def test_other_aad_is_refused(key_file):
    keys = load_keys(key_file)
    token = encrypt(keys, b"seed", b"totp:1")
    with pytest.raises(DecryptionFailed):
        decrypt(keys, token, b"totp:2")


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_tampered_ciphertext_is_refused(key_file, position):
    keys = load_keys(key_file)
    token = encrypt(keys, b"seed-seed-seed", b"totp:1")
    kid, body = token.split(":")
    raw = bytearray(crypto._unb64(body))
    raw[position] ^= 0x01
    with pytest.raises(DecryptionFailed):
        decrypt(keys, f"{kid}:{crypto._b64(bytes(raw))}", b"totp:1")


@pytest.mark.parametrize("token", ["", "nokid", ":abc", "k1:", "k1:!!!", "k1:" + crypto._b64(b"short")])
def test_malformed_tokens_are_refused(key_file, token):
    with pytest.raises(DecryptionFailed):
        decrypt(load_keys(key_file), token, b"x")


def test_unknown_kid_is_refused(key_file, tmp_path):
    other = tmp_path / "other.json"
    generate_key_file(other)
    raw = json.loads(other.read_text())
    raw["kek"] = {"k9": raw["kek"]["k1"]}
    raw["current_kek_id"] = "k9"
    other.write_text(json.dumps(raw))
    token = encrypt(load_keys(other), b"seed", b"a")
    with pytest.raises(UnknownKeyId):
        decrypt(load_keys(key_file), token, b"a")


def test_rotate_adds_a_current_key_and_keeps_the_old_ones(key_file):
    before = load_keys(key_file)
    old_token = encrypt(before, b"old secret", b"totp:7")
    assert rotate_kek(key_file) == "k2"
    assert rotate_kek(key_file) == "k3"
    after = load_keys(key_file)
    assert after.current_kek_id == "k3"
    assert set(after.kek) == {"k1", "k2", "k3"}
    assert len(after.kek["k3"]) == 32 and after.kek["k3"] != after.kek["k2"]
    assert (after.secret_key, after.hmac_key, after.kek["k1"]) == (before.secret_key, before.hmac_key, before.kek["k1"])
    assert decrypt(after, old_token, b"totp:7") == b"old secret"
    assert kid_of(encrypt(after, b"new", b"x")) == "k3"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert not [p for p in key_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_rotations_lose_no_key(key_file):
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(rotate_kek(key_file))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [f"k{i}" for i in range(2, 8)]
    assert len(load_keys(key_file).kek) == 7


def test_rotate_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(KeyFileError, match="hospiconnect init"):
        rotate_kek(tmp_path / "absent.json")


def test_a_running_process_follows_a_rotation(tmp_path):
    path = tmp_path / "keys.json"
    generate_key_file(path)
    loaded_at_start = load_keys(path)  # what a web worker holds
    shutil.copy(path, tmp_path / "copy.json")
    rotate_kek(path)
    rotated = load_keys(path)
    token = encrypt(rotated, b"seed", b"a")
    assert decrypt(loaded_at_start, token, b"a") == b"seed"  # a seed already re-encrypted is readable
    assert kid_of(encrypt(loaded_at_start, b"seed", b"a")) == "k2"  # and new seeds use the new key


def test_keys_built_without_a_file_do_not_reload():
    keys = crypto.InstanceKeys(b"s" * 32, b"h" * 32, {"a": b"k" * 32}, "a")
    assert crypto.refresh_keys(keys) is keys
    with pytest.raises(UnknownKeyId):
        decrypt(keys, "zz:" + crypto._b64(b"x" * 40), b"")
