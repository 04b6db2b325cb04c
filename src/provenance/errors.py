"""The one exception hierarchy of `provenance`.

Security verdicts (`VerificationError` and its children) are kept apart from
storage, key and usage failures, as python-tuf does: a journal that does not
verify is a finding about the evidence, a database that cannot be opened is a
problem with this machine.  Every message is a single line meant for a person.
"""

from __future__ import annotations

__all__ = [
    "BadSignatureError",
    "BadTimestampError",
    "BindingError",
    "BrokenChainError",
    "Error",
    "ForkedJournalError",
    "ImageFormatError",
    "ImportFormatError",
    "IncompleteJournalError",
    "JournalNotFoundError",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyPermissionError",
    "KeyStoreError",
    "MalformedDataError",
    "NoProvenanceError",
    "StoreError",
    "TamperedEntryError",
    "TimestampError",
    "TruncatedJournalError",
    "UnpinnedTimestampAuthorityError",
    "UntrustedSignerError",
    "UsageError",
    "VerificationError",
    "WrongPassphraseError",
]


class Error(Exception):
    """Base class of every error `provenance` raises on purpose."""


class UsageError(Error):
    """The caller asked for something that cannot be done as asked."""


# --- storage -----------------------------------------------------------------


class StoreError(Error):
    """The local store could not be read or written."""


class JournalNotFoundError(StoreError):
    """No journal with that id (or unique id prefix) is in the store."""


# --- keys ----------------------------------------------------------------------


class KeyStoreError(Error):
    """A key could not be created, read or used."""


class KeyNotFoundError(KeyStoreError):
    """No key of that name is in the key store."""


class KeyExistsError(KeyStoreError):
    """A key of that name already exists and will not be overwritten."""


class KeyPermissionError(KeyStoreError):
    """A private key file is readable by group or others (refused, as ssh does)."""


class WrongPassphraseError(KeyStoreError):
    """The passphrase does not decrypt the key (or none was given for an encrypted key)."""


# --- input formats ------------------------------------------------------------------


class ImageFormatError(Error):
    """An image file is malformed, hostile or of an unsupported format."""


class ImportFormatError(Error):
    """Metadata written by another tool could not be parsed."""


class TimestampError(Error):
    """An RFC 3161 time-stamp could not be obtained."""


# --- verification -------------------------------------------------------------------


class VerificationError(Error):
    """The evidence does not hold.  Subclasses name the way it fails."""


class MalformedDataError(VerificationError):
    """The journal or its container cannot be parsed as the format says."""


class TamperedEntryError(VerificationError):
    """An entry's contents do not match what was signed or committed."""


class BadSignatureError(VerificationError):
    """A signature does not verify under the key it names."""


class BrokenChainError(VerificationError):
    """Entries are missing, repeated, reordered or spliced from another journal."""


class TruncatedJournalError(VerificationError):
    """The journal is shorter than a checkpoint that covers it."""


class IncompleteJournalError(VerificationError):
    """Entries are not covered by any signed checkpoint, or a sealed journal goes on."""


class ForkedJournalError(VerificationError):
    """Two checkpoints of one journal disagree: it was rolled back or forked."""


class UntrustedSignerError(VerificationError):
    """Signatures are valid but a signer is not among the pinned keys."""


class UnpinnedTimestampAuthorityError(UntrustedSignerError):
    """A timestamp token's TSA does not chain to any pinned root (its signature is then not checked)."""


class BadTimestampError(VerificationError):
    """A timestamp's TSA chains to a pinned root but is not a valid time-stamping authority for it."""


class NoProvenanceError(VerificationError):
    """An image carries no provenance data."""


class BindingError(VerificationError):
    """The image is not the one the journal's export entry binds."""
