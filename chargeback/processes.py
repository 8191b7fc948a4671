"""How many cores this process may use: whether a second process can help a big command
(reading a usage file, pricing a month, writing a month's documents)."""

from __future__ import annotations

import os


def cores() -> int:
    """The cores this process may run on (its affinity on Linux), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
