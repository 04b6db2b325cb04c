"""Small file helpers shared by the CLI, the image layer and the store."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import Error

__all__ = ["read_limited"]


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
