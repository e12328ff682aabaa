"""Keeping freed memory returnable: glibc's mmap threshold fixed at its default, for long-running processes.

glibc serves an allocation of ``M_MMAP_THRESHOLD`` bytes or more (128 KiB by default) with a mapping of its own and
unmaps it when it is freed. But once such a block is freed it raises the threshold to that block's size (up to
32 MiB on 64-bit), so from then on buffers of that size come from the heap, where freed ones leave holes between
live objects that the heap cannot give back to the system. A bot that opens and closes calls all day allocates many
such buffers (codec contexts, recorder chunks, numpy arrays of a call's audio, the timeline picture): measured with
short calls of 4 participants, the bot's RSS grew by about 1.5 MB per call, and ``malloc_trim`` gave most of it back.
Setting the threshold explicitly turns the adjustment off (``mallopt(3)``): large buffers keep their own mappings.
"""

from __future__ import annotations

import ctypes
import logging
import platform

__all__ = ["MMAP_THRESHOLD", "fix_mmap_threshold"]

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # <malloc.h>


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``size`` bytes for this process; False where that is not possible (not glibc).

    Call it once, early (before the process has freed large blocks); child processes started with ``spawn`` call
    it themselves.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    done = bool(mallopt(_M_MMAP_THRESHOLD, size))
    if not done:
        logger.warning("could not fix the C heap's mmap threshold at %d bytes", size)
    return done
