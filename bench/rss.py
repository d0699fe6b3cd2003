"""The resident memory of a local server: the processes listening on its port, and theirs."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"


def listeners(port: int) -> list[int]:
    """The pids of the processes holding a listening TCP socket on `port` (Linux only)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            return []
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == LISTEN:
                inodes.add(f"socket:[{fields[9]}]")
    pids = []
    for process in PROC.iterdir():
        if not process.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (process / "fd").iterdir()):
                pids.append(int(process.name))
        except OSError:
            continue  # gone, or not ours to read
    return pids


def _parents() -> dict[int, int]:
    parents = {}
    for process in PROC.iterdir():
        if process.name.isdigit():
            try:
                stat = (process / "stat").read_text()
            except OSError:
                continue
            parents[int(process.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def family(pids: list[int]) -> set[int]:
    """The pids, their descendants, and a parent whose children they all are (a supervisor)."""
    parents = _parents()
    members = set(pids)
    common = {parents.get(pid) for pid in pids}
    if len(common) == 1 and len(pids) > 1:
        members |= {pid for pid in common if pid and pid > 1}
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in members}
        grew = not children <= members
        members |= children
    return members


def total(pids: list[int]) -> int:
    """Bytes resident in the pids' family (0 when none is found)."""
    resident = 0
    for pid in family(pids):
        try:
            for line in (PROC / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    resident += int(line.split()[1]) * 1024
        except OSError:
            continue
    return resident
