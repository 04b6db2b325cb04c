"""Ed25519 signing keys, their ids, and the local key store.

A private key lives in one JSON file, ``<home>/keys/<name>.key``, created
exclusively with mode 0600 in a 0700 directory.  It may be encrypted with a
passphrase: scrypt (n = 2**17, r = 8, p = 1 by default; about 0.5 s and 128 MiB,
so guessing is expensive) derives a ChaCha20-Poly1305 key, and every other field
of the file is authenticated as associated data.  A key file readable by group or
others is refused, as ssh refuses one.

Public keys travel as PEM (SubjectPublicKeyInfo).  A key id is the first 16 bytes
of SHA-256 over the raw 32-byte public key, in hex.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ._encoding import b64decode, b64encode, canonical_json
from ._home import data_dir, ensure_private_dir
from .errors import (
    KeyExistsError,
    KeyNotFoundError,
    KeyPermissionError,
    KeyStoreError,
    MalformedDataError,
    WrongPassphraseError,
)

__all__ = [
    "DEFAULT_KEY_NAME",
    "KeyStore",
    "PublicKey",
    "SigningKey",
    "key_id",
    "load_public_key",
]

DEFAULT_KEY_NAME = "default"
KEY_FILE_FORMAT = "provenance-private-key"
DEFAULT_SCRYPT_LOG2_N = 17
# Below 2**14 a passphrase is too cheap to guess; above 2**20 loading a key could
# exhaust memory (scrypt needs 128 * r * n bytes), so a hostile file is refused.
_MIN_LOG2_N, _MAX_LOG2_N = 14, 20
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_KEY_FILE = 64 * 1024


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).digest()[:16].hex()


@attrs.frozen
class PublicKey:
    """An Ed25519 public key and its id."""

    raw: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    _key: Ed25519PublicKey = attrs.field(init=False, repr=False, eq=False)
    keyid: str = attrs.field(init=False, eq=False)

    @raw.validator
    def _check_raw(self, _attr: object, value: bytes) -> None:
        if len(value) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.raw))
        object.__setattr__(self, "keyid", key_id(self.raw))

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def to_pem(self) -> str:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")


def load_public_key(data: bytes) -> PublicKey:
    """Parse a PEM or DER SubjectPublicKeyInfo, or an OpenSSH ``ssh-ed25519`` line."""
    try:
        stripped = data.strip()
        # `provenance key show` prints a "key id:" line above the PEM block, so
        # look for the block (or an OpenSSH line) anywhere in the file.
        begin = stripped.find(b"-----BEGIN PUBLIC KEY-----")
        if stripped.startswith(b"ssh-ed25519 "):
            key: Any = serialization.load_ssh_public_key(stripped.split(b"\n")[0])
        elif begin >= 0:
            key = serialization.load_pem_public_key(stripped[begin:])
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, IndexError, UnsupportedAlgorithm):
        raise MalformedDataError("not a PEM, DER or OpenSSH public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise MalformedDataError("not an Ed25519 public key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PublicKey(raw)


@attrs.frozen
class SigningKey:
    """An Ed25519 private key in memory.  It is never written into a journal."""

    name: str
    _private: Ed25519PrivateKey = attrs.field(repr=False, eq=False)
    public: PublicKey = attrs.field(init=False)

    @public.default
    def _derive_public(self) -> PublicKey:
        return PublicKey(
            self._private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )

    @classmethod
    def generate(cls, name: str = DEFAULT_KEY_NAME) -> SigningKey:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes, name: str = DEFAULT_KEY_NAME) -> SigningKey:
        """A key from its 32-byte seed (test vectors use fixed seeds)."""
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def _seed(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )


class KeyStore:
    """Private keys under ``<home>/keys``."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home if home is not None else data_dir()
        self.directory = self.home / "keys"

    def path(self, name: str) -> Path:
        if not _NAME_RE.fullmatch(name):
            raise KeyStoreError(f"invalid key name {name[:70]!r} (letters, digits, . _ -)")
        return self.directory / f"{name}.key"

    def exists(self, name: str = DEFAULT_KEY_NAME) -> bool:
        return self.path(name).exists()

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.key"))

    def generate(
        self,
        name: str = DEFAULT_KEY_NAME,
        *,
        passphrase: bytes | None = None,
        scrypt_log2_n: int = DEFAULT_SCRYPT_LOG2_N,
    ) -> SigningKey:
        """Create a new key; never overwrites one that exists."""
        key = SigningKey.generate(name)
        self.save(key, passphrase=passphrase, scrypt_log2_n=scrypt_log2_n)
        return key

    def save(
        self,
        key: SigningKey,
        *,
        passphrase: bytes | None = None,
        scrypt_log2_n: int = DEFAULT_SCRYPT_LOG2_N,
    ) -> Path:
        path = self.path(key.name)
        ensure_private_dir(self.home)
        ensure_private_dir(self.directory)
        document = _seal_key(key, passphrase, scrypt_log2_n)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyExistsError(f"key {key.name!r} already exists at {path}") from None
        except OSError as exc:
            raise KeyStoreError(f"cannot create {path}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask was
            handle.write(document)
            handle.flush()
            os.fsync(handle.fileno())
        return path

    def is_encrypted(self, name: str = DEFAULT_KEY_NAME) -> bool:
        return _read_key_document(self.path(name))["encryption"] is not None

    def load(self, name: str = DEFAULT_KEY_NAME, *, passphrase: bytes | None = None) -> SigningKey:
        document = _read_key_document(self.path(name))
        return _open_key(name, document, passphrase)

    def public_key(self, name: str = DEFAULT_KEY_NAME) -> PublicKey:
        """The public half, readable without the passphrase."""
        document = _read_key_document(self.path(name))
        try:
            public = PublicKey(b64decode(document["public_key"]))
        except ValueError as exc:
            raise KeyStoreError(f"key {name!r} is not a valid key file: {exc}") from None
        if public.keyid != document["keyid"]:
            raise KeyStoreError(f"key {name!r} does not match its recorded key id")
        return public


def _seal_key(key: SigningKey, passphrase: bytes | None, log2_n: int) -> bytes:
    document: dict[str, Any] = {
        "format": KEY_FILE_FORMAT,
        "version": 1,
        "algorithm": "ed25519",
        "keyid": key.keyid,
        "public_key": b64encode(key.public.raw),
        "encryption": None,
    }
    seed = key._seed()
    if passphrase is None:
        document["private_key"] = b64encode(seed)
    else:
        if not passphrase:
            raise KeyStoreError("an empty passphrase is not a passphrase")
        if not _MIN_LOG2_N <= log2_n <= _MAX_LOG2_N:
            raise KeyStoreError(f"scrypt cost must be 2**{_MIN_LOG2_N} to 2**{_MAX_LOG2_N}")
        salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
        document["encryption"] = {
            "kdf": "scrypt",
            "salt": b64encode(salt),
            "log2_n": log2_n,
            "r": 8,
            "p": 1,
            "cipher": "chacha20-poly1305",
            "nonce": b64encode(nonce),
        }
        aad = canonical_json(document)
        secret = _derive(passphrase, salt, log2_n)
        document["private_key"] = b64encode(ChaCha20Poly1305(secret).encrypt(nonce, seed, aad))
    return json.dumps(document, indent=2, sort_keys=True).encode("utf-8") + b"\n"


def _derive(passphrase: bytes, salt: bytes, log2_n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=1 << log2_n, r=8, p=1).derive(passphrase)


def _read_key_document(path: Path) -> dict[str, Any]:
    try:
        # Non-blocking, so that a FIFO in place of a key cannot hang us; only a
        # regular file is read (checked below, on what was actually opened).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyNotFoundError(
            f"no key at {path} (create one with `provenance keygen`)"
        ) from None
    except OSError as exc:
        raise KeyStoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise KeyStoreError(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if mode & 0o077:
            raise KeyPermissionError(
                f"permissions {mode & 0o777:04o} for {path} are too open: "
                "a private key must not be readable by others (chmod 600)"
            )
        data = handle.read(_MAX_KEY_FILE + 1)
    if len(data) > _MAX_KEY_FILE:
        raise KeyStoreError(f"{path} is too large to be a key file")
    try:
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("format") != KEY_FILE_FORMAT:
            raise ValueError("not a provenance key file")
        version = document.get("version")
        if type(version) is not int or version != 1 or document.get("algorithm") != "ed25519":
            raise ValueError("unsupported key file version or algorithm")
        for field in ("keyid", "public_key", "private_key"):
            if not isinstance(document.get(field), str):
                raise ValueError(f"missing {field}")
        if "encryption" not in document:
            raise ValueError("missing encryption")
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyStoreError(f"{path} is not a valid key file: {exc}") from None
    return document


def _open_key(name: str, document: dict[str, Any], passphrase: bytes | None) -> SigningKey:
    try:
        public_raw = b64decode(document["public_key"])
        blob = b64decode(document["private_key"])
        encryption = document["encryption"]
        if encryption is None:
            seed = blob
        else:
            if passphrase is None:
                raise WrongPassphraseError(f"key {name!r} is encrypted: a passphrase is needed")
            if not isinstance(encryption, dict) or encryption.get("kdf") != "scrypt" \
                    or encryption.get("cipher") != "chacha20-poly1305" \
                    or encryption.get("r") != 8 or encryption.get("p") != 1:
                raise ValueError("unsupported key encryption")
            log2_n = encryption.get("log2_n")
            if not isinstance(log2_n, int) or not _MIN_LOG2_N <= log2_n <= _MAX_LOG2_N:
                raise ValueError("scrypt cost out of range")
            aad_document = {k: v for k, v in document.items() if k != "private_key"}
            secret = _derive(passphrase, b64decode(encryption["salt"]), log2_n)
            try:
                seed = ChaCha20Poly1305(secret).decrypt(
                    b64decode(encryption["nonce"]), blob, canonical_json(aad_document)
                )
            except InvalidTag:
                raise WrongPassphraseError(
                    f"wrong passphrase for key {name!r} (or the key file was altered)"
                ) from None
        if len(seed) != 32:
            raise ValueError("private key is not 32 bytes")
        key = SigningKey.from_seed(seed, name)
    except (ValueError, TypeError, KeyError) as exc:
        raise KeyStoreError(f"key {name!r} is not a valid key file: {exc}") from None
    if key.public.raw != public_raw or key.keyid != document["keyid"]:
        raise KeyStoreError(f"key {name!r} does not match its recorded public key")
    return key
