"""RFC 3161 time-stamps for checkpoints.

A checkpoint's own time is only its signer's claim.  A time-stamp from a
time-stamping authority (TSA) adds an independent one: the TSA signs "these
SHA-256 bytes existed at genTime", so an auditor who trusts that TSA knows the
checkpoint is at least that old.

What is stored
    `request_timestamp` returns the DER **TimeStampToken** (the CMS
    ``ContentInfo`` holding the signed ``TSTInfo``), not the whole
    ``TimeStampResp``.  The response's other part, ``PKIStatusInfo``, is an
    unsigned transport envelope: it proves nothing and anyone could edit it,
    so keeping it would only add bytes an attacker can change.  The token is
    what RFC 3161 calls the evidence, and what other tools (``openssl ts
    -verify -in ... -token_in``) accept.

How a token is verified (`verify_timestamp`)
    1. it must parse as a TimeStampToken carrying its signing certificate
       (we always ask with ``certReq``);
    2. that certificate must chain, by signature, to one of the caller's root
       certificates, be valid at the token's genTime and carry the critical
       ``timeStamping`` extended key usage RFC 3161 requires;
    3. rfc3161-client (OpenSSL's ``PKCS7_verify`` underneath) then checks the
       CMS signature over the TSTInfo and the whole chain again, at genTime;
    4. the token's message imprint must be SHA-256 and equal SHA-256(data).

    Steps 1-2 are checked first, with `cryptography`, only to tell the auditor
    *why* a token fails; step 3 is the authoritative cryptographic check and
    every token must pass it.  Revocation (CRL/OCSP) is not checked: trust
    rests on the roots the caller pins.

CMS leaves a few fields of a token outside the signature (the SignedData and
SignerInfo version numbers, the signature algorithm identifier), so two token
byte strings can verify to the same claim.  Anything that is stored must
therefore be protected by the checkpoint signature, not identified by its
bytes alone.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client import VerificationError as _RFC3161VerificationError

from provenance.errors import (
    BadSignatureError,
    MalformedDataError,
    TamperedEntryError,
    TimestampError,
    UnpinnedTimestampAuthorityError,
    UntrustedSignerError,
    UsageError,
)

__all__ = [
    "TimestampInfo",
    "check_roots",
    "read_timestamp_covering",
    "read_timestamp_unverified",
    "request_timestamp",
    "verify_timestamp",
]

_QUERY_MEDIA_TYPE = "application/timestamp-query"
_REPLY_MEDIA_TYPE = "application/timestamp-reply"

_SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_DIGEST_NAMES = {
    _SHA256_OID: "sha256",
    x509.ObjectIdentifier("2.16.840.1.101.3.4.2.2"): "sha384",
    x509.ObjectIdentifier("2.16.840.1.101.3.4.2.3"): "sha512",
}

# PKIStatus values under which RFC 3161 section 2.4.2 says a token is present.
_GRANTED = 0
_GRANTED_WITH_MODS = 1

# DER of PKIStatusInfo { status granted }: what we put around a stored token
# to hand it to rfc3161-client, whose API only takes whole TimeStampResps.
_STATUS_GRANTED = b"\x30\x03\x02\x01\x00"

# Certificate chains longer than this are not followed (TSA chains are 2-3).
_MAX_CHAIN = 8

# Longest server-supplied text copied into an error message.
_MAX_SERVER_TEXT = 200

_MSG_MALFORMED = "malformed timestamp token"
_MSG_UNTRUSTED = "timestamp signed by an untrusted TSA"
_MSG_NOT_COVERED = "timestamp does not cover this checkpoint"


@attrs.frozen
class TimestampInfo:
    """What a time-stamp token says.

    From `verify_timestamp` every field is vouched for by a trusted TSA; from
    `read_timestamp_unverified` it is only what the bytes claim.
    """

    time: datetime.datetime
    """The TSA's genTime, timezone-aware UTC."""
    tsa: str
    """Subject of the TSA's signing certificate, as an RFC 4514 string."""
    serial: int
    """The TSA's serial number of this token (unique per TSA)."""
    digest_alg: str
    """Hash of the message imprint: ``"sha256"`` for tokens this module requests."""


# --- DER framing --------------------------------------------------------------------
# Only the outermost layers are walked here, to cut the token out of a response
# and to wrap it back, byte for byte; everything inside is rfc3161-client's job.


def _der_element(buf: bytes, pos: int) -> tuple[int, int, int]:
    """Return (tag, content start, end) of the DER element at `pos`.

    Raises ValueError for anything that is not definite-length, minimal DER
    with a low tag number, or that runs past the end of `buf`.
    """
    if pos + 2 > len(buf):
        raise ValueError("truncated DER header")
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("unexpected high-tag-number form")
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        # 0x80 is BER's indefinite length; four length bytes (4 GiB) is plenty.
        if n == 0 or n > 4 or pos + n > len(buf):
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        if buf[pos] == 0 or length < 0x80:
            raise ValueError("non-minimal DER length")
        pos += n
    end = pos + length
    if end > len(buf):
        raise ValueError("DER element runs past the end of the data")
    return tag, pos, end


def _der_length(n: int) -> bytes:
    """DER encoding of a length."""
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _check_single_sequence(data: bytes) -> None:
    """Raise ValueError unless `data` is exactly one DER SEQUENCE."""
    tag, _, end = _der_element(data, 0)
    if tag != 0x30 or end != len(data):
        raise ValueError("not a single DER SEQUENCE")


def _token_from_response(resp: bytes) -> bytes | None:
    """Cut the TimeStampToken, unchanged, out of a DER TimeStampResp (None if absent)."""
    tag, start, end = _der_element(resp, 0)
    if tag != 0x30 or end != len(resp):
        raise ValueError("TimeStampResp is not a single DER SEQUENCE")
    tag, _, status_end = _der_element(resp, start)
    if tag != 0x30:
        raise ValueError("TimeStampResp does not start with a PKIStatusInfo")
    if status_end == end:
        return None
    tag, _, token_end = _der_element(resp, status_end)
    if tag != 0x30 or token_end != end:
        raise ValueError("unexpected data after the TimeStampToken")
    return resp[status_end:token_end]


def _wrap_token(token: bytes) -> bytes:
    """Put a stored token back into a minimal 'granted' TimeStampResp."""
    _check_single_sequence(token)
    body = _STATUS_GRANTED + token
    return b"\x30" + _der_length(len(body)) + body


# --- parsing ------------------------------------------------------------------------


@attrs.frozen
class _Parsed:
    """A token's contents, pulled out eagerly so that parse errors surface in one place."""

    response: TimeStampResponse
    gen_time: datetime.datetime
    serial: int
    nonce: int | None
    imprint_alg: x509.ObjectIdentifier
    imprint: bytes
    certificates: tuple[x509.Certificate, ...]
    signer: x509.Certificate | None


def _is_rust_panic(exc: BaseException) -> bool:
    """True for pyo3's PanicException (a BaseException) raised by a Rust extension."""
    return type(exc).__name__ == "PanicException"


def _utc(moment: datetime.datetime) -> datetime.datetime:
    """`moment` as timezone-aware UTC (ASN.1 GeneralizedTime is UTC by definition)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def _parse_response(der: bytes) -> _Parsed:
    """Parse a DER TimeStampResp that holds a token; raise ValueError on any defect."""
    try:
        resp = decode_timestamp_response(der)
        info = resp.tst_info
        imprint = info.message_imprint
        signed = resp.signed_data
        certificates = tuple(x509.load_der_x509_certificate(c) for c in signed.certificates)
        signer_infos = list(signed.signer_infos)
        # RFC 3161 section 2.4.2: a token has exactly one signer.
        if len(signer_infos) != 1:
            raise ValueError("a timestamp token must have exactly one signer")
        sid = signer_infos[0]
        signer = next(
            (c for c in certificates if c.issuer == sid.issuer and c.serial_number == sid.serial_number),
            None,
        )
        return _Parsed(
            response=resp,
            gen_time=_utc(info.gen_time),
            serial=int(info.serial_number),
            nonce=None if info.nonce is None else int(info.nonce),
            imprint_alg=imprint.hash_algorithm,
            imprint=bytes(imprint.message),
            certificates=certificates,
            signer=signer,
        )
    except ValueError:
        raise
    except Exception as exc:
        # rfc3161-client reports defects as ValueError; should a getter fail
        # any other way on hostile bytes, that is still just a malformed token.
        raise ValueError(str(exc)) from exc
    except BaseException as exc:
        if _is_rust_panic(exc):
            raise ValueError("parser panicked") from exc
        raise


def _parse_token(token: bytes) -> _Parsed:
    """Parse a stored DER TimeStampToken, or raise MalformedDataError."""
    if not isinstance(token, bytes | bytearray | memoryview):
        raise TypeError(f"token must be bytes, not {type(token).__name__}")
    try:
        return _parse_response(_wrap_token(bytes(token)))
    except ValueError as exc:
        raise MalformedDataError(_MSG_MALFORMED) from exc


def _tsa_name(parsed: _Parsed) -> str:
    """The signer's subject, else the TSTInfo's optional tsa name, else a placeholder."""
    if parsed.signer is not None:
        return parsed.signer.subject.rfc4514_string()
    try:
        name = parsed.response.tst_info.name
    except Exception:
        # The field is optional; absent or exotic names just are not shown.
        return "(unnamed TSA)"
    if isinstance(name, x509.DirectoryName):
        return name.value.rfc4514_string()
    return _one_line(str(name.value))


def _info(parsed: _Parsed) -> TimestampInfo:
    """Build the public summary of a parsed token."""
    return TimestampInfo(
        time=parsed.gen_time,
        tsa=_tsa_name(parsed),
        serial=parsed.serial,
        digest_alg=_DIGEST_NAMES.get(parsed.imprint_alg, parsed.imprint_alg.dotted_string),
    )


def read_timestamp_unverified(token: bytes) -> TimestampInfo:
    """Parse a stored TimeStampToken for display, checking **nothing**.

    Neither the signature, nor the TSA, nor what the token covers is verified:
    anyone can forge these bytes.  Use `verify_timestamp` before relying on
    the result.  Raises MalformedDataError if the bytes are not a token.
    """
    return _info(_parse_token(token))


def read_timestamp_covering(token: bytes, data: bytes) -> TimestampInfo:
    """Parse a token and check only that its imprint is SHA-256(`data`).

    For verifiers with no pinned TSA root: the time is still the TSA's *claim*
    (its signature is not checked without a root to check it against), but a
    token moved from another checkpoint is caught.
    """
    parsed = _parse_token(token)
    if parsed.imprint_alg != _SHA256_OID or parsed.imprint != hashlib.sha256(data).digest():
        raise TamperedEntryError(_MSG_NOT_COVERED)
    return _info(parsed)


# --- requesting ---------------------------------------------------------------------


def _one_line(text: str) -> str:
    """Server-supplied text made safe for a one-line message."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(flat) > _MAX_SERVER_TEXT:
        flat = flat[: _MAX_SERVER_TEXT - 3] + "..."
    return flat


def _display_url(url: str) -> str:
    """`url` without user info or query string, which may hold secrets."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "(invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    return _one_line(f"{parts.scheme}://{host}{port}{parts.path}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would turn the POST into a body-less GET."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _post(url: str, query: bytes, *, timeout: float, max_response: int) -> bytes:
    """POST `query` to `url` and return the body of a 200 answer, bounded in size and time."""
    where = _display_url(url)
    try:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    # urllib would happily read file:// or ftp:// URLs; a TSA speaks HTTP.
    if scheme not in ("http", "https"):
        raise TimestampError("time-stamp URL must start with http:// or https://")
    request = urllib.request.Request(
        url,
        data=query,
        method="POST",
        headers={
            "Content-Type": _QUERY_MEDIA_TYPE,
            "Accept": _REPLY_MEDIA_TYPE,
            "User-Agent": "provenance",
        },
    )
    opener = urllib.request.build_opener(_NoRedirect())
    # `timeout` bounds each socket operation; the deadline bounds the whole
    # download, so a server dripping one byte at a time cannot hold us.
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as answer:
            if answer.status != 200:
                raise TimestampError(f"time-stamp server {where} answered HTTP {answer.status}")
            declared = answer.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_response:
                raise TimestampError(f"time-stamp response from {where} is larger than {max_response} bytes")
            chunks: list[bytes] = []
            size = 0
            while True:
                if time.monotonic() > deadline:
                    raise TimestampError(f"time-stamp request to {where} timed out after {timeout:g}s")
                # read1: return what one recv() gives instead of waiting for the
                # whole buffer, so the deadline is checked while bytes trickle in.
                chunk = answer.read1(min(64 * 1024, max_response + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > max_response:
                    raise TimestampError(f"time-stamp response from {where} is larger than {max_response} bytes")
            return b"".join(chunks)
    except TimestampError:
        raise
    except urllib.error.HTTPError as exc:
        raise TimestampError(f"time-stamp server {where} answered HTTP {exc.code}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, str) else _describe(exc.reason)
        raise TimestampError(f"time-stamp request to {where} failed: {_one_line(str(reason))}") from exc
    except TimeoutError as exc:
        raise TimestampError(f"time-stamp request to {where} timed out after {timeout:g}s") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise TimestampError(f"time-stamp request to {where} failed: {_one_line(_describe(exc))}") from exc


def _describe(exc: BaseException) -> str:
    """A short description of a network exception (some have an empty str())."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return text if text else type(exc).__name__


def _status_text(resp: TimeStampResponse) -> str:
    """The server's status strings, if any, for an error message."""
    try:
        texts = [str(s) for s in resp.status_string]
    except Exception:
        return ""
    joined = _one_line("; ".join(texts))
    return f": {joined}" if joined else ""


def request_timestamp(
    data: bytes,
    url: str,
    *,
    timeout: float = 10.0,
    max_response: int = 1 << 20,
) -> bytes:
    """Obtain an RFC 3161 time-stamp over SHA-256(`data`) from the TSA at `url`.

    The request carries a fresh random nonce and asks for the TSA certificate
    (``certReq``), so the token can later be verified offline.  The answer must
    be HTTP 200, at most `max_response` bytes, arrive within about `timeout`
    seconds, grant the request, and hold a token whose message imprint and
    nonce are those we sent and which carries its signing certificate.

    Returns the DER **TimeStampToken** (not the whole TimeStampResp; see the
    module docstring).  The TSA is *not* trusted here, only checked for
    answering this request: call `verify_timestamp` with pinned roots for
    that.  Raises TimestampError, with a one-line message, on any failure.
    """
    if timeout <= 0:
        raise UsageError("timeout must be positive")
    if max_response <= 0:
        raise UsageError("max_response must be positive")
    digest = hashlib.sha256(data).digest()
    # The builder's constructor (unlike its .data() method) accepts empty data,
    # which is a legitimate thing to time-stamp; it hashes `data` itself.
    request = TimestampRequestBuilder(
        data=bytes(data), hash_algorithm=HashAlgorithm.SHA256, nonce=True, cert_req=True
    ).build()
    nonce = request.nonce
    if nonce is None or request.message_imprint.message != digest:
        # Cannot happen with rfc3161-client as pinned; guard our own invariant.
        raise TimestampError("could not build a time-stamp request")

    body = _post(url, request.as_bytes(), timeout=timeout, max_response=max_response)
    where = _display_url(url)
    try:
        resp = decode_timestamp_response(body)
        status = int(resp.status)
        token = _token_from_response(body)
    except Exception as exc:
        raise TimestampError(f"time-stamp server {where} sent a malformed response") from exc
    if status not in (_GRANTED, _GRANTED_WITH_MODS):
        raise TimestampError(f"time-stamp server {where} refused the request (status {status}){_status_text(resp)}")
    if token is None:
        raise TimestampError(f"time-stamp server {where} granted the request but sent no token")
    # Parse exactly the bytes we will store, the way verify_timestamp will.
    try:
        parsed = _parse_token(token)
    except MalformedDataError as exc:
        raise TimestampError(f"time-stamp server {where} sent a malformed token") from exc
    if parsed.imprint_alg != _SHA256_OID or parsed.imprint != digest:
        raise TimestampError(f"time-stamp from {where} does not cover the data sent")
    if parsed.nonce != nonce:
        # A replayed or misrouted answer to some other request.
        raise TimestampError(f"time-stamp from {where} does not answer this request (nonce)")
    if parsed.signer is None:
        raise TimestampError(f"time-stamp from {where} does not include the TSA certificate")
    return token


# --- verifying ----------------------------------------------------------------------


def _load_roots(roots: Sequence[bytes]) -> list[x509.Certificate]:
    """Load PEM (one or more certificates per item) or DER root certificates."""
    if isinstance(roots, bytes | bytearray | str):
        # A lone PEM string would otherwise be iterated byte by byte.
        raise UsageError("roots must be a sequence of certificates, not one bytes value")
    loaded: list[x509.Certificate] = []
    for index, item in enumerate(roots):
        raw = bytes(item)
        try:
            if b"-----BEGIN" in raw:
                loaded.extend(x509.load_pem_x509_certificates(raw))
            else:
                loaded.append(x509.load_der_x509_certificate(raw))
        except ValueError as exc:
            raise UsageError(f"timestamp root certificate #{index} cannot be parsed") from exc
    if not loaded:
        raise UsageError("no timestamp root certificates given")
    # Deduplicated: rfc3161-client refuses the same root twice.
    unique: dict[bytes, x509.Certificate] = {}
    for cert in loaded:
        unique.setdefault(cert.fingerprint(hashes.SHA256()), cert)
    return list(unique.values())


def check_roots(roots: Sequence[bytes]) -> None:
    """Raise UsageError unless `roots` are certificates (PEM or DER): checked even with no token to verify."""
    _load_roots(roots)


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """True if `parent`'s key signed `child` and the names match."""
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chains_to_root(
    leaf: x509.Certificate,
    pool: Iterable[x509.Certificate],
    roots: Sequence[x509.Certificate],
) -> bool:
    """True if signatures link `leaf`, through certificates in `pool`, to one of `roots`.

    Only signatures and names are looked at; validity periods and extensions
    are left to OpenSSL's full check, which runs afterwards in any case.
    """
    intermediates = [c for c in pool if c != leaf and c not in roots]
    current = leaf
    for _ in range(_MAX_CHAIN):
        if any(_issued_by(current, root) for root in roots):
            return True
        parent = next((c for c in intermediates if _issued_by(current, c)), None)
        if parent is None:
            return False
        intermediates.remove(parent)
        current = parent
    return False


def _check_tsa_certificate(cert: x509.Certificate, at: datetime.datetime) -> None:
    """RFC 3161 section 2.3: the signer must be a TSA certificate, valid at genTime."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise UntrustedSignerError("timestamp signed by a certificate not issued for time-stamping") from None
    except ValueError as exc:
        raise MalformedDataError(_MSG_MALFORMED) from exc
    if not eku.critical or ExtendedKeyUsageOID.TIME_STAMPING not in eku.value:
        raise UntrustedSignerError("timestamp signed by a certificate not issued for time-stamping")
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise UntrustedSignerError("timestamp TSA certificate was not valid at the time-stamp's time")


def verify_timestamp(token: bytes, data: bytes, *, roots: Sequence[bytes]) -> TimestampInfo:
    """Verify a stored TimeStampToken over SHA-256(`data`) against trusted `roots`.

    `roots` are the TSA root certificates the auditor trusts, each PEM (one or
    more certificates) or DER.  Returns what the token vouches for.  Raises,
    each with a one-line reason:

    * MalformedDataError -- not a parseable TimeStampToken with its certificate;
    * UntrustedSignerError -- the signer does not chain to `roots`, is not a
      time-stamping certificate, or was not valid at genTime;
    * BadSignatureError -- the CMS signature (or OpenSSL's chain check) fails;
    * TamperedEntryError -- the token is valid but covers other data;
    * UsageError -- `roots` is empty or unparseable (the caller's mistake, not
      a finding about the evidence).
    """
    trusted = _load_roots(roots)
    parsed = _parse_token(token)
    if parsed.signer is None:
        raise MalformedDataError("timestamp token does not include the TSA certificate")

    # Diagnosis first, so the auditor learns *why* a token fails ...
    if not _chains_to_root(parsed.signer, parsed.certificates, trusted):
        raise UnpinnedTimestampAuthorityError(_MSG_UNTRUSTED)
    _check_tsa_certificate(parsed.signer, parsed.gen_time)

    # ... then the authoritative check: CMS signature over the TSTInfo, the
    # chain at genTime and RFC 3161's signer rules.  It is given the token's
    # own imprint, so that a failure here can only mean a bad signature; the
    # comparison with `data` follows below.
    verifier = VerifierBuilder()
    for root in trusted:
        verifier = verifier.add_root_certificate(root)
    try:
        verifier.build().verify(parsed.response, parsed.imprint)
    except (_RFC3161VerificationError, ValueError) as exc:
        raise BadSignatureError("timestamp signature does not verify") from exc
    except Exception as exc:
        raise MalformedDataError(_MSG_MALFORMED) from exc
    except BaseException as exc:
        if _is_rust_panic(exc):
            raise MalformedDataError(_MSG_MALFORMED) from exc
        raise

    if parsed.imprint_alg != _SHA256_OID:
        raise TamperedEntryError(f"{_MSG_NOT_COVERED} (imprint is not SHA-256)")
    if parsed.imprint != hashlib.sha256(data).digest():
        raise TamperedEntryError(_MSG_NOT_COVERED)
    return _info(parsed)
