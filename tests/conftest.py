"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _tsa import LocalTSA


@pytest.fixture(scope="session")
def local_tsa() -> Iterator[LocalTSA]:
    """A real `openssl ts` time-stamping authority on 127.0.0.1, shared by the session."""
    with LocalTSA() as tsa:
        yield tsa
