"""provenance: signed, hash-chained journals of how AI-assisted images were made.

The public API is re-exported here; see the README for a ten-line example.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import Error, VerificationError
from .journal import Actor, Checkpoint, Entry, SignedEntry
from .keys import KeyStore, PublicKey, SigningKey, load_public_key
from .store import JournalInfo, NewEntry, Store
from .verify import Verdict, verify_file, verify_lines

__all__ = [
    "Actor",
    "Checkpoint",
    "Entry",
    "Error",
    "JournalInfo",
    "KeyStore",
    "NewEntry",
    "PublicKey",
    "SignedEntry",
    "SigningKey",
    "Store",
    "Verdict",
    "VerificationError",
    "__version__",
    "load_public_key",
    "verify_file",
    "verify_lines",
]
