"""Small file helpers shared by the CLI, the image layer and the store."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import Error

__all__ = ["native_stderr_captured", "read_limited", "write_atomic"]

# At most this much of what a C library printed is kept (its first line is used).
_NATIVE_STDERR_KEPT = 4096


def read_limited(path: str | os.PathLike[str], limit: int, error: type[Error]) -> bytes:
    """The file's bytes, refusing (with `error`, one line) a file larger than `limit`.

    Reading one byte past the limit, rather than trusting the size the file
    system reports, also bounds what a growing file or a device can make us read.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit} bytes"
        raise error(f"{Path(path)} is larger than {size}")
    return data


def write_atomic(path: str | os.PathLike[str], chunks: Iterable[bytes], error: type[Error]) -> None:
    """Write `chunks` to a temporary file beside `path`, sync it, then rename it over `path`.

    A reader (or a crash) sees the old file or the whole new one, never a part.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise error(f"cannot write {target}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """While the block runs, what anything writes to file descriptor 2 is kept, not shown.

    For the command line only: C libraries that Pillow drives (libtiff,
    libjpeg inside TIFF) print their diagnostics there directly, which would
    add lines before the command's own one-line error.  The lines kept are
    handed back in the list when the block ends.  The whole process's
    standard error is redirected meanwhile, so a library must not use this.
    """
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield lines
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                sink.seek(0)
                text = sink.read(_NATIVE_STDERR_KEPT).decode("utf-8", "replace")
                lines.extend(line.strip() for line in text.splitlines() if line.strip())
    finally:
        os.close(saved)
