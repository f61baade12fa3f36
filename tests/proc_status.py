"""The resident-set reader the footprint tests put at the head of the scripts they run in a fresh
interpreter: ``status(key)`` is a ``/proc/self/status`` field (``VmRSS``, ``VmHWM``, ...) in bytes."""

from __future__ import annotations

import textwrap

STATUS_SOURCE = textwrap.dedent(
    """
    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    """
)
