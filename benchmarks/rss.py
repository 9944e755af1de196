"""Peak resident memory of this process, as the benchmarks report it."""

from __future__ import annotations

import resource


def ru_maxrss() -> float:
    """``getrusage``'s peak RSS in bytes (kB on Linux)."""
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def peak_rss() -> float:
    """This process's peak RSS in bytes: ``ru_maxrss``, except that on Linux a child's
    ``ru_maxrss`` starts at its parent's peak (the high-water mark of the address space that
    ``exec`` replaced), so the high-water mark of its own, ``VmHWM``, is read where there is one."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return ru_maxrss()
