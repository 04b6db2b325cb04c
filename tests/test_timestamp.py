"""Tests of `provenance.timestamp` against a real `openssl ts` TSA (no mocks)."""

from __future__ import annotations

import datetime
import hashlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder, decode_timestamp_response

from _tsa import LocalTSA, StaticHTTPServer, free_port
from provenance.errors import (
    BadSignatureError,
    MalformedDataError,
    TamperedEntryError,
    TimestampError,
    UntrustedSignerError,
    UsageError,
    VerificationError,
)
from provenance.timestamp import (
    TimestampInfo,
    read_timestamp_unverified,
    request_timestamp,
    verify_timestamp,
)

DATA = b"checkpoint 7 of journal 0f3c: head a1b2c3"

# Flipping bytes of a certificate can yield a negative serial number, which
# cryptography loads with a deprecation warning; the token is rejected anyway.
_IGNORE_SERIAL_WARNING = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")


@pytest.fixture(scope="module")
def token(local_tsa: LocalTSA) -> bytes:
    """One real token over DATA, shared by the read-only tests."""
    return request_timestamp(DATA, local_tsa.url)


@pytest.fixture(scope="module")
def lookalike_tsa() -> Iterator[LocalTSA]:
    """A second PKI with the same names as `local_tsa` but its own keys."""
    with LocalTSA() as tsa:
        yield tsa


def _query(data: bytes, *, cert_req: bool = True) -> bytes:
    """A DER TimeStampReq over SHA-256(data), made independently of the code under test."""
    return (
        TimestampRequestBuilder(data=data, hash_algorithm=HashAlgorithm.SHA256, nonce=True, cert_req=cert_req)
        .build()
        .as_bytes()
    )


def _flip(blob: bytes, pos: int, mask: int) -> bytes:
    out = bytearray(blob)
    out[pos] ^= mask
    return bytes(out)


# --- round trip -------------------------------------------------------------------------------


def test_request_and_verify_round_trip(local_tsa: LocalTSA) -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    tok = request_timestamp(DATA, local_tsa.url)
    after = datetime.datetime.now(datetime.UTC)

    info = verify_timestamp(tok, DATA, roots=[local_tsa.root_pem])

    tsa_cert = x509.load_pem_x509_certificate(local_tsa.tsa_cert_pem)
    assert isinstance(info, TimestampInfo)
    assert info.tsa == tsa_cert.subject.rfc4514_string()
    assert info.digest_alg == "sha256"
    assert info.serial > 0
    assert info.time.tzinfo is not None
    assert info.time.utcoffset() == datetime.timedelta(0)
    # openssl stamps whole seconds from the same clock.
    assert before - datetime.timedelta(seconds=1) <= info.time <= after
    # Parsing alone reads the same claims (but vouches for none of them).
    assert read_timestamp_unverified(tok) == info


def test_stored_bytes_are_a_standard_token(local_tsa: LocalTSA, token: bytes, tmp_path: Path) -> None:
    """What we store is a bare TimeStampToken that openssl itself verifies."""
    signed_data_oid = bytes.fromhex("06092a864886f70d010702")  # id-signedData
    assert token[0] == 0x30
    assert signed_data_oid in token[:16]  # ContentInfo, not a TimeStampResp
    (tmp_path / "token.der").write_bytes(token)
    (tmp_path / "data.bin").write_bytes(DATA)
    (tmp_path / "root.pem").write_bytes(local_tsa.root_pem)
    proc = subprocess.run(
        ["openssl", "ts", "-verify", "-token_in", "-in", "token.der", "-data", "data.bin",
         "-CAfile", "root.pem"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Verification: OK" in proc.stdout


def test_each_request_gets_its_own_token(local_tsa: LocalTSA) -> None:
    first = request_timestamp(DATA, local_tsa.url)
    second = request_timestamp(DATA, local_tsa.url)
    assert first != second
    a = verify_timestamp(first, DATA, roots=[local_tsa.root_pem])
    b = verify_timestamp(second, DATA, roots=[local_tsa.root_pem])
    assert a.serial != b.serial


def test_empty_data_can_be_timestamped(local_tsa: LocalTSA) -> None:
    tok = request_timestamp(b"", local_tsa.url)
    assert verify_timestamp(tok, b"", roots=[local_tsa.root_pem]).digest_alg == "sha256"
    with pytest.raises(TamperedEntryError):
        verify_timestamp(tok, b"\x00", roots=[local_tsa.root_pem])


def test_roots_may_be_der_or_a_pem_bundle(local_tsa: LocalTSA, lookalike_tsa: LocalTSA, token: bytes) -> None:
    der = x509.load_pem_x509_certificate(local_tsa.root_pem).public_bytes(Encoding.DER)
    verify_timestamp(token, DATA, roots=[der])
    verify_timestamp(token, DATA, roots=[lookalike_tsa.root_pem + local_tsa.root_pem])
    verify_timestamp(token, DATA, roots=[lookalike_tsa.root_pem, local_tsa.root_pem, der])


# --- verification failures ----------------------------------------------------------------------


def test_other_data_is_not_covered(local_tsa: LocalTSA, token: bytes) -> None:
    with pytest.raises(TamperedEntryError, match=r"^timestamp does not cover this checkpoint$"):
        verify_timestamp(token, DATA + b"!", roots=[local_tsa.root_pem])


def test_lookalike_root_is_untrusted(lookalike_tsa: LocalTSA, token: bytes) -> None:
    """Same names, other keys: trust rests on signatures, not on names."""
    with pytest.raises(UntrustedSignerError, match=r"^timestamp signed by an untrusted TSA$"):
        verify_timestamp(token, DATA, roots=[lookalike_tsa.root_pem])


def test_tsa_certificate_is_not_a_root(local_tsa: LocalTSA, token: bytes) -> None:
    with pytest.raises(UntrustedSignerError):
        verify_timestamp(token, DATA, roots=[local_tsa.tsa_cert_pem])


def test_untrusted_beats_not_covered(lookalike_tsa: LocalTSA, token: bytes) -> None:
    """Trust is judged before content: an untrusted token is reported as such."""
    with pytest.raises(UntrustedSignerError):
        verify_timestamp(token, b"other", roots=[lookalike_tsa.root_pem])


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"garbage",
        b"\x30\x00",
        b"\x30\x80\x00\x00",  # BER indefinite length
        b"\x30\x84\xff\xff\xff\xff",  # claims 4 GiB
        bytes(range(256)),
        b"-----BEGIN CERTIFICATE-----\n",
    ],
)
def test_garbage_token(local_tsa: LocalTSA, garbage: bytes) -> None:
    with pytest.raises(MalformedDataError, match=r"^malformed timestamp token$"):
        verify_timestamp(garbage, DATA, roots=[local_tsa.root_pem])
    with pytest.raises(MalformedDataError):
        read_timestamp_unverified(garbage)


def test_trailing_bytes_are_rejected(local_tsa: LocalTSA, token: bytes) -> None:
    with pytest.raises(MalformedDataError):
        verify_timestamp(token + b"\x00", DATA, roots=[local_tsa.root_pem])


def test_full_response_is_not_a_token(local_tsa: LocalTSA) -> None:
    """Only the token format is accepted; a whole TimeStampResp is refused."""
    response = local_tsa.reply(_query(DATA))
    assert decode_timestamp_response(response).status == 0
    with pytest.raises(MalformedDataError):
        verify_timestamp(response, DATA, roots=[local_tsa.root_pem])


def test_every_truncation_fails(local_tsa: LocalTSA, token: bytes) -> None:
    for cut in range(len(token)):
        with pytest.raises(MalformedDataError):
            verify_timestamp(token[:cut], DATA, roots=[local_tsa.root_pem])


def test_token_without_certificate_is_refused(local_tsa: LocalTSA) -> None:
    response = local_tsa.reply(_query(DATA, cert_req=False))
    bare = decode_timestamp_response(response).time_stamp_token()
    assert read_timestamp_unverified(bare).digest_alg == "sha256"
    with pytest.raises(MalformedDataError, match="does not include the TSA certificate"):
        verify_timestamp(bare, DATA, roots=[local_tsa.root_pem])


def test_flipped_imprint_fails(local_tsa: LocalTSA, token: bytes) -> None:
    start = token.find(hashlib.sha256(DATA).digest())
    assert start > 0
    for pos in range(start, start + 32):
        with pytest.raises(VerificationError):
            verify_timestamp(_flip(token, pos, 0x01), DATA, roots=[local_tsa.root_pem])


def test_flipped_signature_is_a_bad_signature(local_tsa: LocalTSA, token: bytes) -> None:
    # The SignerInfo's signature is the token's last element, so its last byte
    # is signature material (an ECDSA s value) whatever the lengths.
    with pytest.raises(BadSignatureError, match=r"^timestamp signature does not verify$"):
        verify_timestamp(_flip(token, len(token) - 1, 0x01), DATA, roots=[local_tsa.root_pem])


@_IGNORE_SERIAL_WARNING
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_flipped_byte_fails_cleanly(local_tsa: LocalTSA, token: bytes, data: st.DataObject) -> None:
    """Any byte changed either fails with a VerificationError or changes no claim.

    CMS leaves some fields outside the signature (version numbers, the
    signature algorithm identifier); changing those may still verify, but then
    the token must say exactly what it said before.
    """
    pos = data.draw(st.integers(0, len(token) - 1), label="pos")
    mask = data.draw(st.integers(1, 255), label="mask")
    original = verify_timestamp(token, DATA, roots=[local_tsa.root_pem])
    try:
        info = verify_timestamp(_flip(token, pos, mask), DATA, roots=[local_tsa.root_pem])
    except VerificationError as exc:
        assert "\n" not in str(exc)
    else:
        assert info == original


@pytest.mark.slow
@_IGNORE_SERIAL_WARNING
def test_no_single_bit_flip_changes_a_claim(local_tsa: LocalTSA, token: bytes) -> None:
    """Exhaustively: every bit of every byte."""
    original = verify_timestamp(token, DATA, roots=[local_tsa.root_pem])
    accepted = set()
    for pos in range(len(token)):
        for bit in range(8):
            try:
                info = verify_timestamp(_flip(token, pos, 1 << bit), DATA, roots=[local_tsa.root_pem])
            except VerificationError:
                continue
            assert info == original, (pos, bit)
            accepted.add(pos)
    # Only a handful of unsigned header bytes are malleable.
    assert len(accepted) <= 16, sorted(accepted)


def test_bad_roots_are_a_usage_error(token: bytes) -> None:
    with pytest.raises(UsageError):
        verify_timestamp(token, DATA, roots=[])
    with pytest.raises(UsageError):
        verify_timestamp(token, DATA, roots=[b"not a certificate"])
    with pytest.raises(UsageError):
        verify_timestamp(token, DATA, roots=b"-----BEGIN CERTIFICATE-----")  # type: ignore[arg-type]


# --- transport failures -------------------------------------------------------------------------


def test_unreachable_url_fails_quickly() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    started = time.monotonic()
    with pytest.raises(TimestampError, match="failed") as caught:
        request_timestamp(DATA, url, timeout=5)
    assert time.monotonic() - started < 2
    assert "\n" not in str(caught.value)


def test_silent_server_times_out() -> None:
    # Listening, so connect() succeeds from the backlog, but never answering.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(TimestampError, match="timed out"):
            request_timestamp(DATA, f"http://127.0.0.1:{port}/", timeout=0.5)
        assert time.monotonic() - started < 3


def test_dripping_server_hits_the_deadline() -> None:
    """Each byte arrives well within `timeout`, but the whole answer would not."""
    with StaticHTTPServer(200, bytes(200), drip_delay=0.05) as server:
        started = time.monotonic()
        with pytest.raises(TimestampError, match="timed out"):
            request_timestamp(DATA, server.url, timeout=0.5)
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("status", [500, 404, 503])
def test_http_error_status(status: int) -> None:
    with (
        StaticHTTPServer(status, b"<html>oops</html>", content_type="text/html") as server,
        pytest.raises(TimestampError, match=rf"answered HTTP {status}$"),
    ):
        request_timestamp(DATA, server.url)


def test_non_200_success_status() -> None:
    with StaticHTTPServer(202, b"") as server, pytest.raises(TimestampError, match="HTTP 202"):
        request_timestamp(DATA, server.url)


def test_redirect_is_not_followed(local_tsa: LocalTSA) -> None:
    with (
        StaticHTTPServer(307, b"", headers={"Location": local_tsa.url}) as server,
        pytest.raises(TimestampError, match="HTTP 307"),
    ):
        request_timestamp(DATA, server.url)


def test_oversize_declared_body() -> None:
    with (
        StaticHTTPServer(200, bytes(5000)) as server,
        pytest.raises(TimestampError, match="larger than 4096 bytes"),
    ):
        request_timestamp(DATA, server.url, max_response=4096)


def test_oversize_streamed_body_is_cut_off() -> None:
    """No Content-Length and far more than allowed: we stop reading at the limit."""
    with (
        StaticHTTPServer(200, body_size=64 << 20) as server,
        pytest.raises(TimestampError, match="larger than"),
    ):
        request_timestamp(DATA, server.url)


@pytest.mark.parametrize("body", [b"", b"garbage", bytes(100), b"\x30\x03\x02\x01\x00junk"])
def test_garbage_response(body: bytes) -> None:
    with StaticHTTPServer(200, body) as server, pytest.raises(TimestampError, match="malformed"):
        request_timestamp(DATA, server.url)


def test_rejection_is_reported(local_tsa: LocalTSA, tmp_path: Path) -> None:
    """A real openssl rejection (SHA-1 is not among the TSA's digests)."""
    (tmp_path / "data.bin").write_bytes(DATA)
    subprocess.run(
        ["openssl", "ts", "-query", "-data", "data.bin", "-sha1", "-cert", "-out", "q.tsq"],
        cwd=tmp_path, check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    rejection = local_tsa.reply((tmp_path / "q.tsq").read_bytes())
    assert decode_timestamp_response(rejection).status == 2
    with (
        StaticHTTPServer(200, rejection) as server,
        pytest.raises(TimestampError, match=r"refused the request \(status 2\): .*algorithm"),
    ):
        request_timestamp(DATA, server.url)


def test_answer_for_other_data_is_refused(local_tsa: LocalTSA) -> None:
    replay = local_tsa.reply(_query(b"some other checkpoint"))
    with StaticHTTPServer(200, replay) as server, pytest.raises(TimestampError, match="does not cover"):
        request_timestamp(DATA, server.url)


def test_replayed_answer_is_refused(local_tsa: LocalTSA) -> None:
    """A genuine token for the same data, but answering an earlier request (nonce)."""
    replay = local_tsa.reply(_query(DATA))
    with StaticHTTPServer(200, replay) as server, pytest.raises(TimestampError, match="nonce"):
        request_timestamp(DATA, server.url)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/", "nonsense", "", "http://[::1"])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(TimestampError, match="http"):
        request_timestamp(DATA, url)


def test_credentials_are_not_echoed() -> None:
    url = f"http://user:hunter2@127.0.0.1:{free_port()}/tsa?apikey=hunter2"
    with pytest.raises(TimestampError) as caught:
        request_timestamp(DATA, url, timeout=2)
    assert "hunter2" not in str(caught.value)


def test_bad_parameters_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        request_timestamp(DATA, "http://127.0.0.1:1/", timeout=0)
    with pytest.raises(UsageError):
        request_timestamp(DATA, "http://127.0.0.1:1/", max_response=0)
