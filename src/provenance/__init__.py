"""provenance: signed, hash-chained journals of how AI-assisted images were made.

The public API is re-exported here; see the README for a ten-line example.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .binding import ImageVerdict, attach, verify_image, verify_image_file
from .errors import Error, VerificationError
from .journal import Actor, Checkpoint, Entry, SignedEntry
from .keys import KeyStore, PublicKey, SigningKey, load_public_key
from .recorder import Adapter, Candidate, Generation, Session
from .store import JournalInfo, NewEntry, Store
from .verify import Verdict, verify_file, verify_lines

__all__ = [
    "Actor",
    "Adapter",
    "Candidate",
    "Checkpoint",
    "Entry",
    "Error",
    "Generation",
    "ImageVerdict",
    "JournalInfo",
    "KeyStore",
    "NewEntry",
    "PublicKey",
    "Session",
    "SignedEntry",
    "SigningKey",
    "Store",
    "Verdict",
    "VerificationError",
    "__version__",
    "attach",
    "load_public_key",
    "verify_file",
    "verify_image",
    "verify_image_file",
    "verify_lines",
]
