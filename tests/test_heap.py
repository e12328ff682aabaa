"""``fix_mmap_threshold``: after a large block is freed, later large buffers still get mappings of their own."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# In a fresh interpreter: free an 8 MiB block (glibc then raises its threshold to 8 MiB unless it is fixed), allocate
# 1 MiB and print how many more blocks glibc holds in mappings of their own (mallinfo2's ``hblks``).
PROBE = """
import ctypes, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fix":
    from mediabot._heap import fix_mmap_threshold
    assert fix_mmap_threshold()
big = b"x" * (8 << 20)
del big
before = libc.mallinfo2().hblks
block = b"y" * (1 << 20)
print(libc.mallinfo2().hblks - before)
"""


def mapped_blocks(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_large_buffers_keep_their_own_mappings_once_the_threshold_is_fixed() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the threshold is glibc's")
    assert mapped_blocks("as-is") == 0  # glibc's own adjustment: the 1 MiB buffer came from the heap
    assert mapped_blocks("fix") == 1
