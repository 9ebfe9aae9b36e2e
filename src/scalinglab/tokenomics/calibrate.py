"""Calibrate the roofline to this machine: measured peaks, then fitted efficiencies.

1. Peaks, with NumPy only (no torch): FP32 matmul FLOP/s (best of several n x n GEMMs) and
   memory bandwidth as a matrix-vector product streams a matrix much larger than the caches
   (the access pattern of reading weights in a decode step).
2. Efficiencies, when a `measure_decode(batch, context) -> seconds` callable is passed (the
   engine's own decode step; the engine is torch code, so it is injected, never imported):
   each point's roofline compute and memory times at the measured peaks are fitted to the
   measured time by two models and the one with the lower mean relative error is kept:
     overlapped:  t = max(compute / MFU, memory / MBU) + overhead   (grid over MFU, MBU)
     additive:    t = compute / MFU + memory / MBU + overhead       (non-negative least squares)
   CPUs usually fit the additive model (one core does both).
Measure under the thread settings the engine will serve with (OMP/BLAS threads): on a shared
2-core machine single-threaded timings are far steadier. The result is stored as JSON (default ~/.cache/scalinglab/calibration.json, or
$SCALINGLAB_CALIBRATION) and `get_hardware("local-cpu")` builds its entry from it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.optimize import nnls

from scalinglab.runs.store import atomic_write_json
from scalinglab.tokenomics.catalog import Hardware

UNRESOLVED = 1e6  # fitted efficiency of a term that adds no measurable time: its predicted time is ~0
DEFAULT_POINTS = ((1, 64), (1, 512), (4, 128), (4, 1024), (16, 256), (16, 1024), (64, 128), (64, 512))


def calibration_path() -> Path:
    env = os.environ.get("SCALINGLAB_CALIBRATION")
    return Path(env) if env else Path.home() / ".cache" / "scalinglab" / "calibration.json"


def _ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 8.0


def measure_matmul_flops(n: int = 1024, repeats: int = 5) -> float:
    """Best achieved FP32 GEMM FLOP/s over `repeats` n x n x n products."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm up threads and caches
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


def measure_bandwidth(mbytes: int = 256, repeats: int = 5) -> float:
    """Best achieved read bandwidth (bytes/s) of an FP32 matrix-vector product over `mbytes` of matrix."""
    cols = 4096
    rows = max(1, mbytes * 2**20 // (4 * cols))
    w = np.ones((rows, cols), dtype=np.float32)
    x = np.ones(cols, dtype=np.float32)
    w @ x
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        w @ x
        best = min(best, time.perf_counter() - t)
    return w.nbytes / best


def fit_efficiency(compute_s: np.ndarray, memory_s: np.ndarray, measured_s: np.ndarray) -> dict:
    """Fit MFU, MBU and a fixed overhead so the roofline matches measured step times (see module doc)."""
    c, m, t = (np.asarray(x, dtype=float) for x in (compute_s, memory_s, measured_s))
    # additive model: t = a c + b m + o with a, b, o >= 0 (a = 1/MFU, b = 1/MBU), rows weighted by 1/t
    A = np.stack([c, m, np.ones_like(c)], axis=1) / t[:, None]
    (a, b, o), _ = nnls(A, np.ones_like(t))
    # NNLS may return round-off (1e-17) instead of an exact 0: a term adding under a millionth of the time is 0
    a, b = (x if x * float(np.sum(v)) > 1e-6 * float(np.sum(t)) else 0.0 for x, v in ((a, c), (b, m)))
    pred_add = a * c + b * m + o
    err_add = float(np.mean(np.abs(pred_add - t) / t))
    # overlapped model: grid over the two efficiencies, overhead = median residual (>= 0)
    grid = np.geomspace(1e-3, 1.5, 60)
    best = (np.inf, 1.0, 1.0, 0.0)
    for f in grid:
        for g in grid:
            core = np.maximum(c / f, m / g)
            ov = max(float(np.median(t - core)), 0.0)
            e = float(np.mean(np.abs(core + ov - t) / t))
            if e < best[0]:
                best = (e, f, g, ov)
    err_max, f, g, ov = best
    if err_add <= err_max:
        # a coefficient of 0 means that term adds no measurable time (e.g. a small model whose weights
        # and KV cache stay in the CPU's caches, so the DRAM-bandwidth term is free): efficiency UNRESOLVED,
        # i.e. that time is predicted as 0, not as the peak's (which efficiency 1.0 would claim)
        return {"overlap": False, "mfu": float(1.0 / a) if a > 0 else UNRESOLVED, "mbu": float(1.0 / b) if b > 0 else UNRESOLVED,
                "step_overhead_s": float(o), "fit_mean_rel_error": err_add}
    return {"overlap": True, "mfu": float(f), "mbu": float(g), "step_overhead_s": ov, "fit_mean_rel_error": err_max}


def local_hardware(path: str | Path | None = None) -> Hardware:
    """The "local-cpu" entry: measured peaks and fitted efficiencies when calibrated, else a
    conservative uncalibrated guess (100 GFLOP/s, 10 GB/s)."""
    p = Path(path) if path else calibration_path()
    cal = {}
    if p.is_file():
        try:
            cal = json.loads(p.read_text())
        except json.JSONDecodeError:
            cal = {}
    eff = cal.get("efficiency") or {}
    return Hardware(
        name="local-cpu", bf16_tflops=cal.get("matmul_flops", 1e11) / 1e12, fp8_tflops=None, fp4_tflops=None,
        hbm_gib=cal.get("ram_gib", _ram_gib()), hbm_tbps=cal.get("bandwidth_bytes_per_s", 1e10) / 1e12,
        scaleup_gbps=0.0, scaleup_domain=1, usd_per_hour=cal.get("usd_per_hour", 0.10),
        mfu=eff.get("mfu", 1.0), mbu=eff.get("mbu", 1.0), step_overhead_s=eff.get("step_overhead_s", 0.0),
        overlap=eff.get("overlap", False),
        source=f"calibrated {cal.get('measured_at', '')}".strip() if cal else "uncalibrated default")


def calibrate(measure_decode: Callable[[int, int], float] | None = None, model=None,
              points=DEFAULT_POINTS, weights_dtype: str = "fp32", kv_dtype: str = "fp32",
              path: str | Path | None = None, quick: bool = False, save: bool = True) -> dict:
    """Measure this machine's peaks and, given `measure_decode` and `model` (a ModelSpec, catalog name or
    config.json path), fit MFU/MBU/overhead to the engine's decode steps. Stores and returns the result."""
    from scalinglab.tokenomics.catalog import get_model
    from scalinglab.tokenomics.memory import ServeConfig
    from scalinglab.tokenomics.roofline import StepModel

    flops = measure_matmul_flops(768 if quick else 1536, 3 if quick else 5)
    bw = measure_bandwidth(128 if quick else 512, 3 if quick else 5)
    result = {"machine": f"{os.cpu_count()}-core {os.uname().machine}", "matmul_flops": flops,
              "bandwidth_bytes_per_s": bw, "ram_gib": _ram_gib(),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "efficiency": None, "points": []}
    if measure_decode is not None:
        if model is None:
            raise ValueError("calibrate: measure_decode needs the engine's `model` (ModelSpec, name or config path)")
        spec = get_model(model) if isinstance(model, (str, Path)) else model
        raw = Hardware("local-cpu-raw", flops / 1e12, None, None, _ram_gib(), bw / 1e12, 0.0, 1, 0.0,
                       mfu=1.0, mbu=1.0, overlap=False)
        step = StepModel(spec, raw, ServeConfig(weights_dtype=weights_dtype, kv_dtype=kv_dtype))
        rows = []
        for b, ctx in points:
            st = step.decode(b, ctx)
            rows.append((b, ctx, st.compute_s, st.memory_s, float(measure_decode(b, ctx))))
        arr = np.array([r[2:] for r in rows])
        eff = fit_efficiency(arr[:, 0], arr[:, 1], arr[:, 2])
        result["efficiency"] = eff
        result["model"] = spec.name
        for b, ctx, c, m, t in rows:
            core = max(c / eff["mfu"], m / eff["mbu"]) if eff["overlap"] else c / eff["mfu"] + m / eff["mbu"]
            pred = core + eff["step_overhead_s"]
            result["points"].append({"batch": b, "context": ctx, "measured_s": t, "predicted_s": pred,
                                     "rel_error": (pred - t) / t})
    if save:
        p = Path(path) if path else calibration_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(p, result)
        result["path"] = str(p)
    return result
