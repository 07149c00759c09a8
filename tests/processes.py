"""Which processes a command left behind, read from /proc (Linux): a stopped command must leave none."""

from __future__ import annotations

import os


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (its children, theirs, ...: workers, the multiprocessing
    resource tracker), from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as file:
                    parents[int(entry)] = int(file.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # ended meanwhile
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Running or sleeping: not gone, and not a zombie waiting for its new parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
