"""Host memory reuse for CPU training.

glibc's ``malloc`` gives memory above its trim threshold back to the kernel when it is freed, and hands
out large blocks (over 128 kB to 32 MB, adaptively) as fresh ``mmap`` pages that go back to the kernel
on ``free``; every training step then re-faults the pages of its activations (gigabytes of them for a
paper-scale WaveNet step), a measurable share of a CPU step (docs/performance.md). Serving every
block from the heap and never trimming it keeps freed blocks for the next step: after a few steps a
step faults no page at all.
PyTorch's CUDA allocator caches by itself; this is for CPU processes only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (``mallopt``); returns whether it applied. A no-op
    returning False off Linux/glibc. Idempotent; process-wide, so call it from entry points (the
    trainer, benchmarks), not from library code."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # No mmap'd blocks at all (the heap serves every size), and a trim threshold of 2 GiB (mallopt takes
    # an int): freed memory stays with the process for the next step.
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    if not _done:
        logger.debug("mallopt refused the thresholds; freed memory goes back to the kernel")
    return _done
