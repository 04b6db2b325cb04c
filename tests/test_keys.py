"""Ed25519 keys, key ids, public-key formats and the on-disk key store."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _journal_fixtures import FAST_SCRYPT, fixed_key
from provenance import keys as keys_module
from provenance._cli import main
from provenance._home import HOME_ENV, data_dir
from provenance.errors import (
    KeyExistsError,
    KeyNotFoundError,
    KeyPermissionError,
    KeyStoreError,
    MalformedDataError,
    WrongPassphraseError,
)
from provenance.keys import KeyStore, PublicKey, SigningKey, key_id, load_public_key

PASS = b"correct horse battery staple"

# RFC 8032 section 7.1, TEST 1.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG_EMPTY = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- key ids and signatures -----------------------------------------------------------------


def test_rfc8032_vector_and_key_id() -> None:
    key = SigningKey.from_seed(RFC8032_SEED, "rfc")
    assert key.public.raw == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_SIG_EMPTY
    assert key.public.verify(RFC8032_SIG_EMPTY, b"")
    assert not key.public.verify(RFC8032_SIG_EMPTY, b"x")
    expected = hashlib.sha256(RFC8032_PUBLIC).digest()[:16].hex()
    assert key.keyid == key.public.keyid == key_id(RFC8032_PUBLIC) == expected
    assert len(key.keyid) == 32


def test_key_id_of_generated_keys(tmp_path: Path) -> None:
    key = KeyStore(tmp_path).generate("k")
    assert key.keyid == hashlib.sha256(key.public.raw).digest()[:16].hex()
    document = json.loads(KeyStore(tmp_path).path("k").read_text())
    assert document["keyid"] == key.keyid
    assert base64.b64decode(document["public_key"]) == key.public.raw


def test_verify_rejects_bad_signatures() -> None:
    key = fixed_key(7)
    signature = key.sign(b"message")
    assert key.public.verify(signature, b"message")
    for i in range(64):
        bad = bytearray(signature)
        bad[i] ^= 1
        assert not key.public.verify(bytes(bad), b"message")
    assert not fixed_key(8).public.verify(signature, b"message")


def test_secret_is_not_in_repr() -> None:
    key = fixed_key(9)
    seed = bytes([9]) * 32
    text = repr(key)
    assert seed.hex() not in text and base64.b64encode(seed).decode() not in text
    assert "Ed25519PrivateKey" not in text


@pytest.mark.parametrize("raw", [b"", b"\x00" * 31, b"\x00" * 33])
def test_public_key_must_be_32_bytes(raw: bytes) -> None:
    with pytest.raises(ValueError):
        PublicKey(raw)


# -- the key store: files and permissions ------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o002, 0o022, 0o077])
def test_keygen_writes_0600_file_in_0700_dir(tmp_path: Path, mask: int) -> None:
    home = tmp_path / "home"
    with umask(mask):
        store = KeyStore(home)
        store.generate("default")
        store.generate("second", passphrase=PASS, scrypt_log2_n=FAST_SCRYPT)
    assert mode(home / "keys") == 0o700
    assert mode(home / "keys" / "default.key") == 0o600
    assert mode(home / "keys" / "second.key") == 0o600
    assert sorted(store.names()) == ["default", "second"]


def test_existing_permissive_key_dir_is_tightened(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir(mode=0o755)
    os.chmod(tmp_path / "keys", 0o777)
    KeyStore(tmp_path).generate()
    assert mode(tmp_path / "keys") == 0o700


def test_keygen_creates_no_world_writable_directory(tmp_path: Path) -> None:
    home = tmp_path / "a" / "home"
    with umask(0):
        KeyStore(home).generate()
    for directory in (home, home / "keys"):
        assert mode(directory) & 0o022 == 0, f"{directory} is {mode(directory):04o}"


def test_keygen_never_overwrites(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    first = store.generate()
    before = store.path("default").read_bytes()
    with pytest.raises(KeyExistsError):
        store.generate()
    with pytest.raises(KeyExistsError):
        store.generate(passphrase=PASS, scrypt_log2_n=FAST_SCRYPT)
    assert store.path("default").read_bytes() == before
    assert store.load().keyid == first.keyid


def test_save_refuses_to_follow_a_planted_symlink(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.generate("other")
    target = tmp_path / "elsewhere"
    target.write_text("precious")
    store.path("default").symlink_to(target)
    with pytest.raises(KeyExistsError):
        store.generate()
    assert target.read_text() == "precious"


@pytest.mark.parametrize("permissions", [0o640, 0o604, 0o660, 0o644, 0o606, 0o700, 0o610, 0o601], ids=oct)
def test_group_or_other_accessible_key_is_refused(tmp_path: Path, permissions: int) -> None:
    store = KeyStore(tmp_path)
    store.generate()
    os.chmod(store.path("default"), permissions)
    expect = KeyPermissionError if permissions & 0o077 else None
    if expect is None:
        store.load()
        return
    for call in (store.load, store.public_key, store.is_encrypted):
        with pytest.raises(KeyPermissionError, match="chmod 600"):
            call()


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    key = store.generate()
    for permissions in (0o400, 0o600):
        os.chmod(store.path("default"), permissions)
        assert store.load().keyid == key.keyid


def test_missing_key(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    assert not store.exists()
    assert store.names() == []
    for call in (store.load, store.public_key, store.is_encrypted):
        with pytest.raises(KeyNotFoundError, match="keygen"):
            call()


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "-x", "x" * 65, "a b", "k\n", "é"])
def test_invalid_key_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(KeyStoreError, match="invalid key name"):
        KeyStore(tmp_path).generate(name)
    assert not (tmp_path / "keys").exists() or not any((tmp_path / "keys").iterdir())


@pytest.mark.parametrize("name", ["a", "A.b-c_d", "x" * 64, "0"])
def test_valid_key_names(tmp_path: Path, name: str) -> None:
    KeyStore(tmp_path).generate(name)
    assert KeyStore(tmp_path).names() == [name]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[]",
        b"{}",
        b'{"format": "provenance-private-key"}',
        b"\xff\xfe\x00",
        json.dumps({"format": "provenance-private-key", "version": 2, "algorithm": "ed25519"}).encode(),
        json.dumps({"format": "provenance-private-key", "version": True, "algorithm": "ed25519"}).encode(),
        b" " * (64 * 1024 + 1),
    ],
)
def test_garbage_key_files_are_key_store_errors(tmp_path: Path, content: bytes) -> None:
    store = KeyStore(tmp_path)
    (tmp_path / "keys").mkdir(mode=0o700)
    path = store.path("default")
    path.write_bytes(content)
    os.chmod(path, 0o600)
    for call in (store.load, store.public_key, store.is_encrypted):
        with pytest.raises(KeyStoreError):
            call()


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_key_path_that_is_not_a_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    store = KeyStore(tmp_path)
    (tmp_path / "keys").mkdir(mode=0o700)
    path = store.path("odd")
    if kind == "directory":
        path.mkdir(mode=0o700)
    else:
        os.mkfifo(path, 0o600)  # opened for reading, it would wait for a writer forever
    for call in (store.load, store.public_key, store.is_encrypted):
        with pytest.raises(KeyStoreError, match="is not a regular file"):
            call("odd")


def test_key_list_reports_a_bad_key_file_and_lists_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    store = KeyStore()
    good = store.generate("good")
    install(tmp_path, "broken", b"not a key")
    (store.directory / "dir.key").mkdir()
    assert main(["key", "list"]) == 2
    out, err = capsys.readouterr()
    assert out == f"good\t{good.keyid}\n"
    assert err.count("\n") == 2 and "key 'broken'" in err and "key 'dir'" in err and "not a regular file" in err


# -- passphrases ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encrypted_key_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """An encrypted key file's bytes and its key id (made once: scrypt is slow)."""
    home = tmp_path_factory.mktemp("enc")
    store = KeyStore(home)
    key = store.generate("enc", passphrase=PASS, scrypt_log2_n=FAST_SCRYPT)
    return store.path("enc").read_bytes(), key.keyid


def install(home: Path, name: str, data: bytes) -> KeyStore:
    store = KeyStore(home)
    store.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = store.path(name)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return store


def test_passphrase_round_trip(tmp_path: Path, encrypted_key_file: tuple[bytes, str]) -> None:
    data, keyid = encrypted_key_file
    store = install(tmp_path, "enc", data)
    assert store.is_encrypted("enc")
    assert store.public_key("enc").keyid == keyid  # readable without the passphrase
    key = store.load("enc", passphrase=PASS)
    assert key.keyid == keyid
    assert key.public.verify(key.sign(b"m"), b"m")
    document = json.loads(data)
    assert document["encryption"]["kdf"] == "scrypt"
    assert document["encryption"]["log2_n"] == FAST_SCRYPT
    assert document["encryption"]["cipher"] == "chacha20-poly1305"
    assert len(base64.b64decode(document["private_key"])) == 32 + 16  # seed + Poly1305 tag


def test_plain_key_file_is_marked_unencrypted(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    key = store.generate()
    assert not store.is_encrypted()
    document = json.loads(store.path("default").read_text())
    assert document["encryption"] is None
    # A passphrase given for an unencrypted key is simply not needed.
    assert store.load(passphrase=b"whatever").keyid == key.keyid


def test_encrypted_file_does_not_contain_the_seed(tmp_path: Path) -> None:
    key = fixed_key(42, "seeded")
    store = KeyStore(tmp_path)
    store.save(key, passphrase=PASS, scrypt_log2_n=FAST_SCRYPT)
    data = store.path("seeded").read_bytes()
    seed = bytes([42]) * 32
    assert seed not in data and base64.b64encode(seed) not in data and seed.hex().encode() not in data
    assert store.load("seeded", passphrase=PASS).keyid == key.keyid


@pytest.mark.parametrize("passphrase", [b"wrong", PASS + b" ", PASS[:-1], PASS.upper()])
def test_wrong_passphrase(tmp_path: Path, encrypted_key_file: tuple[bytes, str], passphrase: bytes) -> None:
    store = install(tmp_path, "enc", encrypted_key_file[0])
    with pytest.raises(WrongPassphraseError):
        store.load("enc", passphrase=passphrase)


def test_missing_passphrase_for_encrypted_key(tmp_path: Path, encrypted_key_file: tuple[bytes, str]) -> None:
    store = install(tmp_path, "enc", encrypted_key_file[0])
    with pytest.raises(WrongPassphraseError, match="passphrase"):
        store.load("enc")


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="empty passphrase"):
        KeyStore(tmp_path).generate(passphrase=b"", scrypt_log2_n=FAST_SCRYPT)
    assert not KeyStore(tmp_path).exists()


@pytest.mark.parametrize("log2_n", [-1, 0, 1, 10, 13, 21, 30, 64])
def test_scrypt_cost_out_of_range_is_refused(tmp_path: Path, log2_n: int) -> None:
    store = KeyStore(tmp_path)
    with pytest.raises(KeyStoreError, match="scrypt cost"):
        store.generate(passphrase=PASS, scrypt_log2_n=log2_n)
    assert not store.exists()


@pytest.mark.parametrize("log2_n", [13, 21, 31, 64, 1000, -5, "14", 14.0, True, None])
def test_hostile_scrypt_cost_in_a_file_is_refused_before_deriving(
    tmp_path: Path, encrypted_key_file: tuple[bytes, str], log2_n: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = json.loads(encrypted_key_file[0])
    document["encryption"]["log2_n"] = log2_n
    store = install(tmp_path, "enc", json.dumps(document).encode())

    def no_derive(*args: Any) -> bytes:
        raise AssertionError("scrypt must not run with a cost out of range")

    monkeypatch.setattr(keys_module, "_derive", no_derive)
    with pytest.raises(KeyStoreError):
        store.load("enc", passphrase=PASS)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kdf", "argon2"),
        ("cipher", "aes-256-gcm"),
        ("r", 16),
        ("p", 2),
        ("salt", "AAAA"),
        ("nonce", "AAAAAAAAAAAAAAAA"),
        ("nonce", "AAAA"),
        ("salt", 5),
    ],
)
def test_altered_encryption_parameters(
    tmp_path: Path, encrypted_key_file: tuple[bytes, str], field: str, value: Any
) -> None:
    document = json.loads(encrypted_key_file[0])
    document["encryption"][field] = value
    store = install(tmp_path, "enc", json.dumps(document).encode())
    with pytest.raises(KeyStoreError):
        store.load("enc", passphrase=PASS)


def test_encrypted_blob_is_bound_to_its_public_key(tmp_path: Path) -> None:
    """Moving one file's encrypted key into another's document is detected (AAD)."""
    store = KeyStore(tmp_path)
    store.generate("a", passphrase=PASS, scrypt_log2_n=FAST_SCRYPT)
    store.generate("b", passphrase=PASS, scrypt_log2_n=FAST_SCRYPT)
    a = json.loads(store.path("a").read_text())
    b = json.loads(store.path("b").read_text())
    mixed = dict(a, public_key=b["public_key"], keyid=b["keyid"])
    install(tmp_path, "mixed", json.dumps(mixed).encode())
    with pytest.raises(WrongPassphraseError):
        store.load("mixed", passphrase=PASS)
    swapped = dict(b, encryption=a["encryption"], private_key=a["private_key"])
    install(tmp_path, "swapped", json.dumps(swapped).encode())
    with pytest.raises(KeyStoreError):
        store.load("swapped", passphrase=PASS)


def flip(data: bytes, position: int, mask: int) -> bytes:
    out = bytearray(data)
    out[position] ^= mask
    return bytes(out)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_flipped_bit_in_encrypted_key_file_is_a_key_store_error(
    tmp_path: Path, encrypted_key_file: tuple[bytes, str], data: st.DataObject
) -> None:
    """Real scrypt, random positions; one bit only so that the cost stays at most 2**16."""
    original, _ = encrypted_key_file
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    bit = data.draw(st.integers(0, 7), label="bit")
    store = install(tmp_path, "enc", flip(original, position, 1 << bit))
    with pytest.raises(KeyStoreError):
        store.load("enc", passphrase=PASS)


@pytest.fixture
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Swap scrypt for a fast deterministic KDF, so that every byte can be tried."""

    def derive(passphrase: bytes, salt: bytes, log2_n: int) -> bytes:
        return hashlib.sha256(b"%d|" % log2_n + salt + b"|" + passphrase).digest()

    monkeypatch.setattr(keys_module, "_derive", derive)


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
def test_every_byte_changed_in_a_key_file_is_a_key_store_error(
    tmp_path: Path, cheap_kdf: None, encrypted: bool
) -> None:
    store = KeyStore(tmp_path / "src")
    store.generate("k", passphrase=PASS if encrypted else None, scrypt_log2_n=FAST_SCRYPT)
    original = store.path("k").read_bytes()
    for position in range(len(original)):
        for mask in (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x0D, 0xFF):
            changed = flip(original, position, mask)
            target = install(tmp_path, "k", changed)
            try:
                target.load("k", passphrase=PASS)
            except KeyStoreError:
                continue
            except Exception as exc:  # pragma: no cover - the failure being tested for
                pytest.fail(f"byte {position} ^ {mask:#x}: {type(exc).__name__}: {exc}")
            pytest.fail(f"byte {position} ^ {mask:#x} was accepted: {changed!r}")


def test_public_key_of_a_corrupted_file_is_a_key_store_error(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "src")
    store.generate("k")
    document = json.loads(store.path("k").read_text())
    text = document["public_key"]
    failures = []
    for position in range(len(text) - 1):  # the last character is padding
        for replacement in "AB/+9z":
            if replacement == text[position]:
                continue
            changed = dict(document, public_key=text[:position] + replacement + text[position + 1 :])
            target = install(tmp_path, "k", json.dumps(changed).encode())
            try:
                target.public_key("k")
            except KeyStoreError:
                continue
            except Exception as exc:
                failures.append(f"{position}:{replacement} {type(exc).__name__}")
                continue
            failures.append(f"{position}:{replacement} accepted")
    assert not failures, failures[:5]


# -- public key formats ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def public() -> PublicKey:
    return fixed_key(3).public


def test_pem_round_trip(public: PublicKey) -> None:
    pem = public.to_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n") and pem.endswith("-----END PUBLIC KEY-----\n")
    assert load_public_key(pem.encode()) == public
    assert load_public_key(pem.encode().replace(b"\n", b"\r\n")) == public
    assert load_public_key(b"\n\n  " + pem.encode() + b"\n\n") == public


def test_der_round_trip(public: PublicKey) -> None:
    der = public._key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert load_public_key(der) == public


def test_openssh_round_trip(public: PublicKey) -> None:
    line = public._key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert line.startswith(b"ssh-ed25519 ")
    assert load_public_key(line) == public
    assert load_public_key(line + b" alice@example.org\n") == public


def test_key_show_output_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path))
    key = KeyStore().generate()
    assert main(["key", "show"]) == 0
    out = capsys.readouterr().out
    first, rest = out.split("\n", 1)
    assert first == f"key id: {key.keyid}"
    assert rest == key.public.to_pem()
    assert load_public_key(out.encode()) == key.public
    shown = tmp_path / "shown.pem"
    shown.write_text(out)
    assert load_public_key(shown.read_bytes()).keyid == key.keyid


def other_algorithm_keys() -> list[bytes]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    out = []
    for k in (rsa_key, ec_key):
        out.append(k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        out.append(k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        out.append(k.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    private = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return [*out, private]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x00" * 32,
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"ssh-ed25519 AAAA",
        b"ssh-ed25519 ",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        *other_algorithm_keys(),
    ],
)
def test_load_public_key_rejects_everything_else(data: bytes) -> None:
    with pytest.raises(MalformedDataError):
        load_public_key(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_load_public_key_on_random_bytes_is_malformed_or_a_key(data: bytes) -> None:
    with contextlib.suppress(MalformedDataError):
        load_public_key(data)


# -- PROVENANCE_HOME -------------------------------------------------------------------------


def test_provenance_home_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "custom home"
    monkeypatch.setenv(HOME_ENV, str(home))
    assert data_dir() == home
    store = KeyStore()
    assert store.home == home
    key = store.generate()
    assert (home / "keys" / "default.key").is_file()
    assert KeyStore(home).load().keyid == key.keyid


def test_provenance_home_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(HOME_ENV, "~/prov")
    assert data_dir() == tmp_path / "prov"


def test_empty_provenance_home_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOME_ENV, "")
    assert data_dir().name == "provenance"
