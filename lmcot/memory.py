"""Give freed model memory back to the operating system between compile stages.

A training stage frees its model, gradients and optimizer state when it ends, but on Linux glibc's
allocator keeps most of the freed heap in the process (torch allocates a small model's layers as a few
hundred tensors of a few MB each, below glibc's mmap threshold), and the next stage's model comes on
top of it (figures: bench/README.md, "Memory between stages"). ``malloc_trim(0)`` returns those free pages. Neither Python's ``gc`` nor torch
has a call for this (torch's CPU allocator is plain malloc), hence the ctypes call. Elsewhere (macOS,
musl) it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys


def free_memory() -> None:
    """Collect garbage, empty the accelerator's cache and hand free heap pages back to the OS."""
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just to free memory
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    _malloc_trim()


def _malloc_trim() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


def rss_mb() -> int | None:
    """This process's resident set size in MB (Linux), for logging memory at stage boundaries."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        return None
    return None
