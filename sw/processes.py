"""Stopping what a command started: every descendant process, on Ctrl-C and SIGTERM.

A Verilator build runs ``make``, which runs the C++ compiler; interrupting
vitforge alone would leave those running. The command line turns SIGTERM into
the same :exc:`KeyboardInterrupt` as Ctrl-C (so every ``finally`` and staging
folder is cleaned up) and then stops the processes below it, found through
``/proc`` (Linux), without touching its own process group, which may hold the
caller.
"""

import os
from pathlib import Path
import signal

__all__ = ["descendants", "stop_descendants", "interrupt_on_sigterm"]


def descendants(pid=None):
    """The ids of every living process below ``pid`` (default: this one), deepest last."""
    pid = os.getpid() if pid is None else pid
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Field 4 of /proc/PID/stat, after the parenthesised command name.
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue                        # ended meanwhile, or not readable
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], list(children.get(pid, []))
    while pending:
        child = pending.pop(0)
        found.append(child)
        pending += children.get(child, [])
    return found


def stop_descendants(sig=signal.SIGKILL):
    """Send ``sig`` to every process below this one; returns how many there were."""
    processes = descendants()
    for pid in processes:
        try:
            os.kill(pid, sig)
        except OSError:
            pass                            # already gone
    return len(processes)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def interrupt_on_sigterm():
    """From now on, SIGTERM raises :exc:`KeyboardInterrupt` in the main thread."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
