"""One background thread, for work that releases the GIL while it runs.

SHA-256 over large buffers, zlib, SQLite's fsync and most of Pillow's C loops
let other Python threads run, so handing one of them to this thread overlaps
it with what the caller does meanwhile (two cores do two things).  Callers
wait for the result before they return: nothing outlives the call that
started it, and an exception reaches the caller through `Future.result`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import ParamSpec, TypeVar

__all__ = ["running", "submit"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_owner_pid = 0


def _forget_in_child() -> None:
    # A forked child inherits the executor without its thread, and perhaps the
    # lock held by a thread that does not exist there: start afresh.
    global _executor, _lock, _owner_pid
    _executor, _lock, _owner_pid = None, threading.Lock(), 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def submit(fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
    """Run ``fn(*args, **kwargs)`` on the background thread."""
    global _executor, _owner_pid
    with _lock:
        if _executor is None or _owner_pid != os.getpid():  # (the pid check covers os.fork's absence of hooks)
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="provenance-background")
            _owner_pid = os.getpid()
        return _executor.submit(fn, *args, **kwargs)


@contextlib.contextmanager
def running(fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Iterator[Future[_T]]:
    """``fn(*args, **kwargs)`` on the background thread while the block runs.

    Leaving the block waits for it, on an error too, so nothing outlives the
    block; read its result (or its exception) with `Future.result` after.
    """
    future = submit(fn, *args, **kwargs)
    try:
        yield future
    finally:
        wait([future])
