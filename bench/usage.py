"""What a local server uses: the resident memory and CPU time of the processes listening on its
port, and of theirs; how busy the machine's cores are, and how fast they run."""

from __future__ import annotations

import os
import platform
import sys
import time
import timeit
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


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


def parents() -> dict[int, int]:
    """Each process's parent, by pid: one reading of /proc, for the families of that moment."""
    found = {}
    for process in PROC.iterdir():
        if process.name.isdigit():
            try:
                stat = (process / "stat").read_text()
            except OSError:
                continue
            found[int(process.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def family(pids: list[int], parents: dict[int, int]) -> set[int]:
    """The pids, their descendants, and a parent whose children they all are (a supervisor)."""
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


def resident(members: set[int]) -> int:
    """Bytes resident in the processes (0 when none is found)."""
    found = 0
    for pid in members:
        try:
            for line in (PROC / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found += int(line.split()[1]) * 1024
        except OSError:
            continue
    return found


def executables(members: set[int]) -> set[str]:
    """The programs the processes run (their interpreter, for Python), as paths."""
    found = set()
    for pid in members:
        try:
            found.add(os.readlink(PROC / str(pid) / "exe"))
        except OSError:
            continue  # gone, or not ours to read
    return found


def interpreters(server: set[str]) -> str:
    """This load's Python and the server's programs: a build's own speed (its optimisations)
    varies more than a change's, so a figure says which ran."""
    load = f"{os.path.realpath(sys.executable)} ({platform.python_version()})"
    ran = f"; server {', '.join(sorted(server))}" if server else ""
    return f"interpreters    this load {load}{ran}"


def loop_microseconds() -> float:
    """How long this interpreter takes for `sum(range(1000))`, as `python -m timeit` measures
    it: the best of five rounds of at least 0.2 s each (about 1.5 s in all). Shorter rounds
    read up to four times slower on this machine in the same minute, idle: its cores' speed
    varies from moment to moment, and from hour to hour by more than most changes do, so a
    figure is comparable only with those taken at a like speed."""
    timer = timeit.Timer("sum(range(1000))")
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def machine_speed(microseconds: float) -> str:
    return (
        f"machine speed   sum(range(1000)) in {microseconds:.1f} us on this load's interpreter, "
        "before the load (compare figures taken at like speeds)"
    )


def cpu_seconds(members: set[int]) -> float:
    """CPU time the processes have used so far, user and system (of those still running)."""
    ticks = 0
    for pid in members:
        try:
            fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / _TICKS


def machine_busy_seconds() -> float:
    """CPU time the machine's cores have spent busy so far, all together (0 if unknown)."""
    try:
        fields = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / _TICKS


@dataclass(frozen=True)
class Sample:
    """CPU time used so far by a local server, by this load and by the whole machine."""

    at: float  # time.monotonic()
    answered: int  # messages answered so far
    server: float
    load: float
    machine: float


def sample(answered: int, server: set[int], load: set[int]) -> Sample:
    return Sample(
        time.monotonic(), answered, cpu_seconds(server), cpu_seconds(load), machine_busy_seconds()
    )


def cpu_report(first: Sample, last: Sample, server_known: bool) -> list[str]:
    """Cores used on average between two samples, by whom, and the server's per 1,000 msg/s."""
    seconds = last.at - first.at
    if seconds <= 0:
        return []
    server, load = (last.server - first.server) / seconds, (last.load - first.load) / seconds
    rest = max(0.0, (last.machine - first.machine) / seconds - server - load)
    cores = os.cpu_count() or 1
    who = f"server {server:.2f}, " if server_known else ""
    lines = [
        f"CPU (cores)     {who}this load {load:.2f}, the rest of the machine {rest:.2f}, "
        f"of {cores} (over {seconds:.0f} s)"
    ]
    rate = (last.answered - first.answered) / seconds
    if server_known and rate > 0:
        lines.append(f"  server {server / rate * 1000:.2f} cores per 1,000 msg/s answered")
    return lines
