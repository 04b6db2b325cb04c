"""Small file helpers shared by the CLI, the image layer and the store."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import Error

__all__ = ["read_limited", "write_atomic"]


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
