"""How busy the machine was with other work while the benchmark ran.

On a shared 2-core machine another process's threads turn PyTorch's OpenMP
barriers into waits for the scheduler (a tiny model's 2 ms forward took 300 ms
here), so every figure says how much CPU others used while it was measured.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

BUSY_SHARE = 0.10


class BusyMachineWarning(UserWarning):
    """Other processes used a noticeable share of the CPUs during the measurements."""


def _machine_cpu_s() -> tuple[float, float] | None:
    """Busy and steal CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    v = [int(x) for x in fields] + [0] * 10
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class CpuMonitor:
    """Per phase: the share of all CPUs that other processes (not this one or its children) used."""

    def __init__(self) -> None:
        self.ncpu = os.cpu_count() or 1
        self.phases: dict[str, dict] = {}
        self._start: tuple | None = None
        self._name: str | None = None

    def _now(self) -> tuple:
        return time.perf_counter(), _machine_cpu_s(), _own_cpu_s()

    def begin(self, name: str) -> None:
        self.end()
        self._name, self._start = name, self._now()

    def end(self) -> None:
        if self._name is None or self._start is None:
            return
        (t0, m0, o0), (t1, m1, o1) = self._start, self._now()
        wall = t1 - t0
        row: dict = {"seconds": round(wall, 1)}
        if m0 is not None and m1 is not None and wall > 0:
            other = max(0.0, (m1[0] - m0[0]) - (o1 - o0))
            row["other_cpu_share"] = round(other / (wall * self.ncpu), 3)
            row["steal_share"] = round((m1[1] - m0[1]) / (wall * self.ncpu), 3)
        self.phases[self._name] = row
        self._name = self._start = None

    def report(self, timed: tuple[str, ...]) -> dict:
        """The phases, the busiest timed one, and a warning when others used more than 10% of the CPUs."""
        self.end()
        shares = [self.phases[p].get("other_cpu_share", 0.0) for p in timed if p in self.phases]
        worst = max(shares, default=0.0)
        out = {"phases": self.phases, "timed": list(timed), "max_other_cpu_share": worst,
               "loadavg_end": list(os.getloadavg()), "busy": worst > BUSY_SHARE}
        if out["busy"]:
            warnings.warn(
                f"other processes used up to {worst:.0%} of the CPUs while the benchmark measured; "
                "the timings are disturbed (run it again on a quiet machine)",
                BusyMachineWarning, stacklevel=3,
            )
        return out
