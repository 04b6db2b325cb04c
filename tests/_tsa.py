"""A real, local RFC 3161 time-stamping authority for tests.

`LocalTSA` builds a throw-away PKI in a temporary directory with the `openssl`
command-line tool (a root CA and a TSA certificate whose extended key usage is
the critical ``timeStamping`` purpose RFC 3161 section 2.3 demands) and serves
RFC 3161 over HTTP on 127.0.0.1.  Every request body is piped into the real
``openssl ts -reply``, so the tokens the tests check are produced by an
independent implementation, not by the code under test.

`StaticHTTPServer` is its misbehaving sibling: it answers every POST with a
fixed status and body, for testing how clients cope with broken servers.

Both bind only the loopback interface, on a port the kernel picks, and stop
(and delete their files) when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["MAX_QUERY_BYTES", "LocalTSA", "StaticHTTPServer", "free_port"]

# A TimeStampReq is a few hundred bytes; anything much bigger is not a query.
MAX_QUERY_BYTES = 64 * 1024

# Seconds a single `openssl` invocation may take before the test PKI is
# considered broken; keeps a wedged subprocess from hanging the suite.
_OPENSSL_TIMEOUT = 30.0

_TSA_EXTENSIONS = """\
[tsa_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

# Deliberately no `certs =` line: replies made with one are known not to work
# with rfc3161-client.  Without it a query with certReq=TRUE gets the signer
# certificate alone, which is all a verifier holding the root needs.
_TS_CONFIG = """\
[tsa]
default_tsa = tsa_config

[tsa_config]
dir = {dir}
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.55555.1.1
other_policies = 1.3.6.1.4.1.55555.1.2
digests = sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = 0
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _openssl(*args: str, cwd: Path, stdin: bytes | None = None) -> bytes:
    """Run the openssl CLI, returning stdout; raise with its stderr on failure."""
    proc = subprocess.run(
        ["openssl", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=_OPENSSL_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"openssl {args[0]} failed ({proc.returncode}): {err}")
    return proc.stdout


def free_port() -> int:
    """A loopback TCP port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    """Common plumbing: no access log on stderr, bounded body reads."""

    # Socket timeout so a client that connects and sends nothing cannot pin
    # a server thread forever.
    timeout = 10

    def log_message(self, format: str, *args: object) -> None:
        """Keep pytest output clean."""

    def _read_body(self) -> bytes | None:
        """The request body, or None (after replying 4xx) if it is missing or too big."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.send_error(411, "Content-Length required")
            return None
        if length < 0 or length > MAX_QUERY_BYTES:
            self.send_error(413, "query too large")
            return None
        return self.rfile.read(length)

    def _reply(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        # The client may hang up early (e.g. after reading Content-Length): its right.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    """A loopback HTTP server whose handler threads die with the test process."""

    daemon_threads = True
    # Released ports must be reusable at once by the next fixture.
    allow_reuse_address = True


class _ServerMixin:
    """Start/stop of a `_Server` in a background thread, as a context manager."""

    _server: _Server | None = None
    _thread: threading.Thread | None = None

    def _start(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        # Port 0: the kernel picks a free port, so parallel test runs never collide.
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()

    def _stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def url(self) -> str:
        """The http:// URL of the running server."""
        if self._server is None:
            raise RuntimeError("server is not running (use it in a `with` block)")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"


class LocalTSA(_ServerMixin):
    """A root CA, a TSA certificate and an `openssl ts -reply` HTTP front end.

    Use as a context manager::

        with LocalTSA() as tsa:
            token = request_timestamp(b"...", tsa.url)
            verify_timestamp(token, b"...", roots=[tsa.root_pem])

    `root_name` and `tsa_name` are the subject common names; giving two
    instances the same names yields look-alike PKIs with different keys, which
    is how tests check that trust rests on keys, not on names.
    (A TSA certificate without the critical timeStamping EKU cannot be
    offered: `openssl ts -reply` refuses to sign with one.)
    """

    def __init__(
        self,
        *,
        root_name: str = "provenance test root CA",
        tsa_name: str = "provenance test TSA",
    ) -> None:
        self.root_name = root_name
        self.tsa_name = tsa_name
        self.root_pem = b""
        self.tsa_cert_pem = b""
        self.requests_served = 0
        self._dir: Path | None = None
        # `openssl ts -reply` rewrites the serial file; one reply at a time.
        self._lock = threading.Lock()

    # --- PKI -----------------------------------------------------------------

    def _make_pki(self, d: Path) -> None:
        """Create root.pem/root.key and a root-issued tsa.pem/tsa.key in `d`."""
        # EC P-256 keys: generated in milliseconds, unlike RSA.
        _openssl(
            "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", "root.key", "-out", "root.pem", "-days", "3650",
            "-subj", f"/O=provenance tests/CN={self.root_name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-addext", "subjectKeyIdentifier=hash",
            cwd=d,
        )  # fmt: skip
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr",
            "-subj", f"/O=provenance tests/CN={self.tsa_name}",
            cwd=d,
        )  # fmt: skip
        (d / "tsa_ext.cnf").write_text(_TSA_EXTENSIONS)
        _openssl(
            "x509", "-req", "-in", "tsa.csr", "-CA", "root.pem", "-CAkey", "root.key",
            "-set_serial", f"0x{secrets.token_hex(16)}", "-days", "365",
            "-extfile", "tsa_ext.cnf", "-extensions", "tsa_ext", "-out", "tsa.pem",
            cwd=d,
        )  # fmt: skip
        (d / "tsaserial").write_text("01\n")
        (d / "ts.cnf").write_text(_TS_CONFIG.format(dir=d))
        self.root_pem = (d / "root.pem").read_bytes()
        self.tsa_cert_pem = (d / "tsa.pem").read_bytes()

    def sign_with_an_expired_certificate(self) -> None:
        """From now on, sign with a TSA certificate of the same root and key that expired in 2020.

        `openssl ts -reply` does not look at the dates, so its tokens chain to
        the root but were made outside their certificate's validity.
        """
        if self._dir is None:
            raise RuntimeError("LocalTSA is not running")
        root = x509.load_pem_x509_certificate((self._dir / "root.pem").read_bytes())
        root_key = serialization.load_pem_private_key((self._dir / "root.key").read_bytes(), None)
        tsa_key = serialization.load_pem_private_key((self._dir / "tsa.key").read_bytes(), None)
        assert isinstance(root_key, ec.EllipticCurvePrivateKey) and isinstance(tsa_key, ec.EllipticCurvePrivateKey)
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "provenance tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, self.tsa_name),
        ])  # fmt: skip
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(root.subject)
            .public_key(tsa_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
            .not_valid_after(datetime.datetime(2020, 1, 2, tzinfo=datetime.UTC))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .sign(root_key, hashes.SHA256())
        )
        self.tsa_cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
        (self._dir / "tsa.pem").write_bytes(self.tsa_cert_pem)

    def reply(self, query: bytes) -> bytes:
        """Answer one DER TimeStampReq with the DER TimeStampResp openssl makes."""
        if self._dir is None:
            raise RuntimeError("LocalTSA is not running")
        with self._lock:
            # A fresh file per query: openssl reads the query from a file.
            qfile = self._dir / "query.tsq"
            qfile.write_bytes(query)
            out = _openssl(
                "ts", "-reply", "-queryfile", str(qfile),
                "-config", str(self._dir / "ts.cnf"), "-section", "tsa_config",
                cwd=self._dir,
            )  # fmt: skip
            self.requests_served += 1
            return out

    # --- context manager -----------------------------------------------------------

    def __enter__(self) -> Self:
        self._dir = Path(tempfile.mkdtemp(prefix="provenance-tsa-"))
        try:
            self._make_pki(self._dir)
            self._start(self._handler())
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        self._stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        tsa = self

        class Handler(_QuietHandler):
            def do_POST(self) -> None:
                query = self._read_body()
                if query is None:
                    return
                try:
                    answer = tsa.reply(query)
                except (RuntimeError, subprocess.TimeoutExpired):
                    # openssl rejected the query (not DER, unknown digest...):
                    # a real TSA would answer rejection; 400 is close enough.
                    self.send_error(400, "bad time-stamp query")
                    return
                self._reply(200, answer, "application/timestamp-reply")

        return Handler


class StaticHTTPServer(_ServerMixin):
    """An HTTP server that answers every POST with one fixed response.

    `body_size` (instead of `body`) streams that many zero bytes without
    holding them in memory and without a Content-Length header, as a hostile
    server would, so a client must bound its own read.  `drip_delay` sends the
    body one byte at a time with that many seconds between bytes, so a client
    must bound the total time, not just each read.  `headers` are added to the
    answer (e.g. a ``Location`` for a redirect).
    """

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        *,
        content_type: str = "application/timestamp-reply",
        body_size: int | None = None,
        drip_delay: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.body_size = body_size
        self.drip_delay = drip_delay
        self.headers = dict(headers or {})
        # Set on exit so a dripping handler thread stops promptly.
        self._stopping = threading.Event()

    def _send(self, handler: _QuietHandler) -> None:
        """Write the configured answer on `handler`."""
        if self.body_size is None and self.drip_delay is None:
            handler._reply(self.status, self.body, self.content_type, self.headers)
            return
        handler.send_response(self.status)
        handler.send_header("Content-Type", self.content_type)
        for name, value in self.headers.items():
            handler.send_header(name, value)
        if self.body_size is None:
            handler.send_header("Content-Length", str(len(self.body)))
        else:
            handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            if self.drip_delay is not None:
                for byte in self.body:
                    if self._stopping.wait(self.drip_delay):
                        return
                    handler.wfile.write(bytes([byte]))
                    handler.wfile.flush()
                return
            chunk = bytes(64 * 1024)
            left = self.body_size or 0
            while left > 0 and not self._stopping.is_set():
                n = min(left, len(chunk))
                handler.wfile.write(chunk[:n])
                left -= n
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: exactly what it should do

    def __enter__(self) -> Self:
        server = self

        class Handler(_QuietHandler):
            def do_POST(self) -> None:
                if self._read_body() is not None:
                    server._send(self)

        self._stopping.clear()
        self._start(Handler)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._stop()
