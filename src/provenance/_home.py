"""Where `provenance` keeps its key store and session index on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from .errors import StoreError

__all__ = ["HOME_ENV", "data_dir", "ensure_private_dir"]

HOME_ENV = "PROVENANCE_HOME"


def data_dir() -> Path:
    """`$PROVENANCE_HOME`, else platformdirs' user data directory."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("provenance", appauthor=False))


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it 0700: keys and journals live here."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror or exc}") from None
    return path
