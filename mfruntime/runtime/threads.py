"""How many CPU threads generation uses: a fixed number, or ``"auto"`` — the cores other processes leave free.

Why: PyTorch's CPU kernels split each operation over a team of threads that meet at a barrier. When another
process (the game engine, a renderer) keeps one of those cores busy, every barrier waits for the thread the
OS has descheduled, and a chunk that takes 60 ms on an idle machine takes a second. One thread fewer than
the busy cores avoids that, at the price of some speed on an idle machine.

``"auto"`` measures, before every chunk, how much CPU the *other* processes used on the cores this process
may run on since the previous chunk (``/proc/stat`` minus this process's own CPU time), smooths it, and runs
the chunk with the cores left over (at least 1, at most ``max_threads``). Where ``/proc/stat`` does not
exist (macOS, Windows) it falls back to the system load average, and failing that to all usable cores.
"""
from __future__ import annotations

import os
import time

import torch

from mfruntime.config import DEFAULT_THREADS

THREADS_AUTO = DEFAULT_THREADS
MAX_THREADS = 256  # the largest fixed thread count accepted
_SMOOTHING = 0.5  # weight of the newest reading in the moving average of other processes' busy cores
_ROUND_UP = 0.35  # free cores are rounded down unless this close to the next whole core
_TORCH_DEFAULT = torch.get_num_threads()  # PyTorch's own choice (physical cores), or what the host set first


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(threads) -> int | str:
    """A thread setting: ``"auto"`` or a whole number from 1 to MAX_THREADS."""
    if threads == THREADS_AUTO:
        return THREADS_AUTO
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be 'auto' or a whole number from 1 to {MAX_THREADS}, got {threads!r}")
    return threads


def threads_for(other_busy: float, cores: int, max_threads: int) -> int:
    """Threads to use when other processes keep ``other_busy`` cores busy out of ``cores``."""
    free = cores - max(0.0, other_busy)
    return int(min(max_threads, max(1, int(free + _ROUND_UP))))


def _read_proc_stat(cpus: set[int]) -> float | None:
    """Busy seconds so far summed over the given CPUs, from /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            lines = f.readlines()
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    seen = False
    for line in lines:
        head, _, rest = line.partition(" ")
        if not head.startswith("cpu") or head == "cpu" or not head[3:].isdigit() or int(head[3:]) not in cpus:
            continue
        values = [int(v) for v in rest.split()]
        # user nice system idle iowait irq softirq steal guest guest_nice; guest time is inside user already
        busy += sum(values[:8]) - values[3] - values[4]
        seen = True
    return busy / hz if seen else None


class CpuMeter:
    """Cores kept busy by other processes, measured between successive ``read()`` calls."""

    def __init__(self) -> None:
        try:
            self.cpus = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self.cpus = set(range(os.cpu_count() or 1))
        self._last = self._sample()

    def _sample(self) -> tuple[float, float | None, float]:
        return time.perf_counter(), _read_proc_stat(self.cpus), time.process_time()

    def read(self) -> float | None:
        """Average number of cores other processes kept busy since the previous read (None: unknown)."""
        now = self._sample()
        (w0, b0, p0), (w1, b1, p1) = self._last, now
        self._last = now
        if b0 is not None and b1 is not None and w1 - w0 > 1e-3:
            return max(0.0, ((b1 - b0) - (p1 - p0)) / (w1 - w0))
        if hasattr(os, "getloadavg"):  # no /proc/stat: the 1-minute load average, minus this process's share
            try:
                return max(0.0, os.getloadavg()[0] - 1.0)
            except OSError:
                return None
        return None


class ThreadPolicy:
    """Decides the thread count of each chunk and applies it (``torch.set_num_threads``, which PyTorch keeps
    per process: sessions iterated at the same time from several threads share it)."""

    def __init__(self, threads: int | str = THREADS_AUTO, max_threads: int | None = None) -> None:
        self.setting = check_threads(threads)
        self.max_threads = max_threads or min(usable_cores(), _TORCH_DEFAULT)
        self._meter = CpuMeter() if self.setting == THREADS_AUTO else None
        self._other = 0.0
        self.current = self.max_threads if self.setting == THREADS_AUTO else int(self.setting)

    @property
    def other_busy(self) -> float:
        """Smoothed cores used by other processes (0 for a fixed setting)."""
        return self._other

    def apply(self) -> int:
        """Set the thread count for the next chunk; returns it."""
        if self._meter is not None:
            reading = self._meter.read()
            if reading is not None:
                self._other = _SMOOTHING * reading + (1 - _SMOOTHING) * self._other
            self.current = threads_for(self._other, len(self._meter.cpus), self.max_threads)
        # Always set, never "only when torch.get_num_threads() differs": that reads the calling thread's OpenMP
        # setting, while the BLAS thread count is process-wide, so another session (or thread) may have changed
        # it since — and a different BLAS thread count changes the float rounding, so a fixed setting would no
        # longer give bit-identical output. The call costs well under a microsecond.
        torch.set_num_threads(self.current)
        return self.current
