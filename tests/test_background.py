"""The background thread: results and errors come back, a forked child gets its own thread,
and the two callers that use it give exactly what the sequential code gives."""

from __future__ import annotations

import os
import sys

import pytest
from PIL import Image

from provenance import _background, _formats, phash
from provenance.images import digest_loaded


def test_result_and_error_come_back() -> None:
    assert _background.submit(int, "7").result(timeout=30) == 7
    with pytest.raises(ValueError):
        _background.submit(int, "seven").result(timeout=30)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_thread_of_its_own() -> None:
    _background.submit(int, "1").result(timeout=30)  # the parent's thread exists
    pid = os.fork()
    if pid == 0:  # the child: the inherited executor has no thread; a new one must serve
        try:
            code = 0 if _background.submit(int, "7").result(timeout=20) == 7 else 1
        except BaseException:
            code = 2
        sys.stdout.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16"])
def test_digest_of_a_large_image_equals_the_sequential_hashes(mode: str) -> None:
    image = Image.radial_gradient("L").resize((700, 500)).convert("RGB")
    image = image.convert(mode) if mode != "I;16" else image.convert("L").convert("I;16")
    digest = digest_loaded(image, None)
    assert digest.pixel_sha256 == _formats.pixel_hash(image).hex()
    assert digest.phash == phash.reference_hash(image).to_str()


def test_running_waits_for_the_job_when_the_block_fails() -> None:
    import threading

    release = threading.Event()

    def slow() -> str:
        release.wait(timeout=30)
        return "done"

    with pytest.raises(RuntimeError), _background.running(slow) as job:
        threading.Timer(0.2, release.set).start()
        raise RuntimeError("the caller failed")
    assert job.done() and job.result() == "done"  # leaving the block waited for it
