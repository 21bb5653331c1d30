"""Timing and peak-memory measurement shared by every benchmark.

Both implementations run in this one process, alternating call by call, on the same input. Time is
the median of `repeats` calls after warm-up (the first call, which for JAX includes tracing and
XLA compilation, is reported separately). Memory is the process's peak resident set size
(VmHWM) during the timed calls, above what was resident before them; the peak is reset between
measurements through /proc/self/clear_refs.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable


def _read_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclasses.dataclass
class Measurement:
    first_call_s: float  # includes compilation for JAX
    median_s: float
    min_s: float
    peak_mib: float  # peak RSS during first + timed calls, above the RSS before them

    def row(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in dataclasses.asdict(self).items()}


def measure(fn: Callable[[], object], *, repeats: int = 5) -> Measurement:
    """Runs fn once (warm-up / compile) then `repeats` times. fn must block until done."""
    baseline_kib = _read_status_kib("VmRSS")
    peak_ok = _reset_peak_rss()
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    peak_kib = _read_status_kib("VmHWM") if peak_ok else _read_status_kib("VmRSS")
    return Measurement(
        first_call_s=first,
        median_s=statistics.median(times),
        min_s=min(times),
        peak_mib=max(peak_kib - baseline_kib, 0) / 1024,
    )


def print_comparison(title: str, ours: Measurement, reference: Measurement) -> dict:
    ratio = ours.median_s / reference.median_s
    print(f"\n== {title}")
    print(f"{'':12}{'first call s':>14}{'median s':>11}{'min s':>9}{'peak MiB':>10}")
    for label, m in (("sam2_jax", ours), ("reference", reference)):
        print(f"{label:12}{m.first_call_s:14.3f}{m.median_s:11.3f}{m.min_s:9.3f}{m.peak_mib:10.0f}")
    print(f"time ratio ours/reference: {ratio:.2f}  (<1 means sam2_jax is faster)")
    return {"title": title, "ours": ours.row(), "reference": reference.row(), "ratio": ratio}


def measure_alternating(
    fns: dict[str, Callable[[], object]], *, repeats: int = 3
) -> dict[str, Measurement]:
    """Each fn once (warm-up / compile), then `repeats` rounds calling each in turn, so a
    change in machine load hits every implementation alike. fns must block until done."""
    baseline_kib = _read_status_kib("VmRSS")
    first: dict[str, float] = {}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():
        start = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - start
    peak_ok = _reset_peak_rss()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    peak_kib = _read_status_kib("VmHWM") if peak_ok else _read_status_kib("VmRSS")
    return {
        name: Measurement(
            first_call_s=first[name],
            median_s=statistics.median(times[name]),
            min_s=min(times[name]),
            peak_mib=max(peak_kib - baseline_kib, 0) / 1024,  # of the whole process
        )
        for name in fns
    }


def measure_pair(
    ours: Callable[[], object], reference: Callable[[], object], *, repeats: int = 5
) -> tuple[Measurement, Measurement]:
    """`measure_alternating` for the usual pair: (ours, reference) Measurements."""
    timings = measure_alternating({"ours": ours, "reference": reference}, repeats=repeats)
    return timings["ours"], timings["reference"]
