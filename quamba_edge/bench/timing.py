"""GPU timing primitives shared by the benchmarks: CUDA-graph-replay timing, the kernel-driven bandwidth
floor and the launch floor (needs a CUDA device; torch only).

The floor is the best rate a *kernel* reaches over >= 4 GiB (far past L2): a read-only reduction (fp16
``sum``) and an in-place elementwise read + write (``bitwise_not_``). A CUDA-graph-captured ``copy_`` runs on
the copy engines (2.77 TB/s on the H200 against 4.2 TB/s for a kernel) and is never a floor.
"""

from __future__ import annotations

import inspect
import statistics
from typing import Any, Callable

import torch

__all__ = ["time_ms", "kernel_bandwidths", "launch_floor_ms", "device_info"]


def _indexed(fn: Callable) -> Callable[[int], None]:
    try:
        nparams = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        nparams = 1
    return fn if nparams >= 1 else (lambda i: fn())


def _time_eager(fn: Callable[[int], None], reps: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(reps):
        fn(i)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def time_ms(fn: Callable[[int], None], target_ms: float = 20.0, replays: int = 7) -> tuple[float, str]:
    """Median ms per call of ``fn(i)`` and the method: "graph" (CUDA events around replays of a graph of
    back-to-back calls, so the Python dispatcher's launch gaps stay out) or "eager" (not capturable)."""
    fn = _indexed(fn)
    for i in range(3):  # warm-up (module load, allocator, autotuning)
        fn(i)
    torch.cuda.synchronize()
    one = _time_eager(fn, 3)
    reps = int(max(1, min(500, target_ms / max(one, 1e-3))))
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for i in range(2):
                fn(i)
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for i in range(reps):
                fn(i)
        g.replay()
        torch.cuda.synchronize()
        times = []
        for _ in range(replays):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            g.replay()
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e) / reps)
        del g
        return statistics.median(times), "graph"
    except Exception:  # not capturable: eager loop (includes launch gaps)
        torch.cuda.synchronize()
        times = [_time_eager(fn, reps) for _ in range(replays)]
        return statistics.median(times), "eager"


def kernel_bandwidths(nbytes: int = 4 * 2**30) -> dict[str, float]:
    """The best rates kernels reach over ``nbytes`` (>= 4 GiB), bytes/s: ``read`` = an fp16 ``sum``
    (read-only reduction), ``read_write`` = an in-place ``bitwise_not_`` (bytes read + written)."""
    x = torch.randn(nbytes // 2, device="cuda", dtype=torch.float16)
    read_ms, _ = time_ms(lambda i: x.sum(), target_ms=60.0)
    del x
    b = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_(0, 255)
    rw_ms, _ = time_ms(lambda i: b.bitwise_not_(), target_ms=60.0)
    del b
    torch.cuda.empty_cache()
    return {"read": nbytes / (read_ms * 1e-3), "read_write": 2 * nbytes / (rw_ms * 1e-3)}


def launch_floor_ms() -> float:
    """A one-element kernel, timed as above: no kernel launch inside a graph takes less."""
    x = torch.zeros(1, device="cuda")
    ms, _ = time_ms(lambda i: x.add_(1.0), target_ms=5.0)
    return ms


def device_info(device: Any = None) -> dict[str, Any]:
    """Name, memory, SM count and (where NVML answers) clocks of a CUDA device, plus torch / CUDA versions."""
    idx = torch.device(device or "cuda").index or 0
    p = torch.cuda.get_device_properties(idx)
    info: dict[str, Any] = {"name": p.name, "total_memory_gib": round(p.total_memory / 2**30, 1),
                            "sm_count": p.multi_processor_count, "capability": f"{p.major}.{p.minor}",
                            "torch": torch.__version__, "cuda": torch.version.cuda}
    try:  # clocks: NVML through pynvml where installed (torch.cuda.clock_rate uses it too)
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(idx)
        info["sm_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
        info["mem_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)
        info["max_sm_clock_mhz"] = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)
    except Exception as e:  # no NVML (a Jetson, a CPU box): say so rather than guess
        info["clocks"] = f"not readable ({type(e).__name__})"
    return info
