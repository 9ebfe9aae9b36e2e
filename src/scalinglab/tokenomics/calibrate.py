"""Calibrate the roofline to this machine: measured peaks, then fitted efficiencies.

1. Peaks, with NumPy only (no torch): FP32 matmul FLOP/s (n x n GEMMs) and memory bandwidth
   as matrix-vector products stream slices of a matrix much larger than the caches (the access
   pattern of reading weights in a decode step); see `measure_peaks`.
2. Efficiencies, when a `measure_decode(batch, context) -> seconds` callable is passed (the
   engine's own decode step; the engine is torch code, so it is injected, never imported):
   each point's roofline compute and memory times at the measured peaks are fitted to the
   measured time by two models and the one with the lower mean relative error is kept:
     overlapped:  t = max(compute / MFU, memory / MBU) + overhead   (grid over MFU, MBU)
     additive:    t = compute / MFU + memory / MBU + overhead       (non-negative least squares)
   CPUs usually fit the additive model (one core does both).

Measuring on a busy machine. Other processes only ever add time to a measurement, and on a
2-core box shared with other jobs they do so most of the time, by 2x or more. So every quantity
is a set of short samples and its estimate is the *fastest* sample (the unloaded time), with the
spread (min, median, max) reported next to it:
  - decode points are measured in rounds, one sample of every point per round in a fresh random
    order, so a burst of load hits all points alike rather than all samples of one point; the
    held-out points a caller checks the fit against (`holdout`) are measured in the same rounds;
  - rounds continue until a time budget is spent (at least `MIN_ROUNDS`, at most `MAX_ROUNDS`);
  - peaks are measured on one core, timed by that thread's own CPU time (`one_blas_thread`): a
    multi-threaded GEMM waits at every call for all its threads to be scheduled, which on a loaded
    box made it 20-100x slower, while one thread's CPU time does not count time it was preempted.
Peaks need no interleaving (CPU time is immune to load) and do not enter local-cpu predictions
(the fitted efficiencies are relative to them); they set the scale of MFU/MBU. Limit: a
multi-threaded engine step runs at full speed only while all its threads are scheduled; under
load that never lets up, the fastest sample is the fastest that load allowed (alike for every
point, so the fit still holds), and `spread_s` shows how far typical steps were from it.
Measure under the thread settings the engine will serve with (OMP/BLAS threads). The result is
stored as JSON (default ~/.cache/scalinglab/calibration.json, or $SCALINGLAB_CALIBRATION) and
`get_hardware("local-cpu")` builds its entry from it.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import nnls

from scalinglab.errors import UserError
from scalinglab.runs.store import atomic_write_json
from scalinglab.tokenomics.spec import Hardware

UNRESOLVED = 1e6  # fitted efficiency of a term that adds no measurable time: its predicted time is ~0
DEFAULT_POINTS = ((1, 64), (1, 512), (4, 128), (4, 1024), (16, 256), (16, 1024), (64, 128), (64, 512))
MIN_ROUNDS = 3  # interleaved rounds of decode samples, whatever the budget
MAX_ROUNDS = 60  # and at most this many (more would not move a minimum)
BUDGET_S = {True: 6.0, False: 12.0}  # at most these seconds of decode rounds after the first (quick, full): with
# MAX_ROUNDS, a quiet machine stops at the round cap in ~2 s and only a loaded one spends the budget


def calibration_path() -> Path:
    env = os.environ.get("SCALINGLAB_CALIBRATION")
    return Path(env) if env else Path.home() / ".cache" / "scalinglab" / "calibration.json"


def _ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 8.0


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def spread(samples: Sequence[float]) -> dict:
    """Min, median and max of repeated measurements, and how many. Of times, the estimate is the min
    (load only adds time); of rates (FLOP/s, bytes/s), the max."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("spread: no samples")
    return {"min": float(x.min()), "median": float(np.median(x)), "max": float(x.max()), "n": int(x.size)}


def _openblas():
    """NumPy's OpenBLAS, as a ctypes handle (None when NumPy uses another BLAS or it cannot be found)."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = sorted(
                {line.split()[-1] for line in f if "openblas" in line.lower() and line.split()[-1].startswith("/")}
            )
        return ctypes.CDLL(paths[0]) if paths else None
    except (OSError, IndexError):
        return None


@contextmanager
def one_blas_thread():
    """Run NumPy's BLAS on the calling thread only, restoring its thread count after; yields whether it could.

    Why: a multi-threaded GEMM waits at every call for all its threads to be scheduled, which on a
    loaded machine costs a scheduler time slice per call (measured 1-7 GFLOP/s instead of ~85 with
    two spinning processes); one thread, timed by its own CPU time, is immune to being preempted."""
    lib = _openblas()
    fn = getattr(lib, "openblas_set_num_threads_local", None) if lib is not None else None
    if fn is None:
        yield False
        return
    import ctypes

    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int]
    old = fn(1)
    try:
        yield True
    finally:
        fn(max(old, 1))


def _timed(op, single: bool) -> float:
    """Seconds `op()` took: its thread's CPU time when it runs on this thread alone, else wall time."""
    clock = time.thread_time if single else time.perf_counter
    t = clock()
    op()
    return clock() - t


def matmul_samples(n: int = 512, repeats: int = 20, single: bool = False) -> list[float]:
    """Achieved FP32 GEMM FLOP/s of each of `repeats` n x n x n products (`single`: timed by thread CPU time)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm up threads and caches
    return [2.0 * n**3 / _timed(lambda: a @ b, single) for _ in range(repeats)]


def bandwidth_samples(
    mbytes: int = 128, repeats: int = 32, chunk_mbytes: int = 16, single: bool = False
) -> list[float]:
    """Achieved read bandwidth (bytes/s) of each of `repeats` FP32 matrix-vector products, each over the
    next `chunk_mbytes` slice of an `mbytes` matrix (cycled, so a slice is cold: the rest was read since)."""
    cols = 4096
    rows = max(1, chunk_mbytes * 2**20 // (4 * cols))
    k = max(2, mbytes // max(chunk_mbytes, 1))
    w = np.ones((k * rows, cols), dtype=np.float32)
    x = np.ones(cols, dtype=np.float32)
    for i in range(k):  # touch every page once, warm up threads
        w[i * rows : (i + 1) * rows] @ x
    slices = [w[i * rows : (i + 1) * rows] for i in range(k)]
    return [slices[r % k].nbytes / _timed(lambda: slices[r % k] @ x, single) for r in range(repeats)]


def measure_peaks(quick: bool = False) -> dict:
    """This machine's FP32 GEMM FLOP/s and streaming bandwidth, with their spreads (FLOP/s and bytes/s).

    Measured on one core (see `one_blas_thread`): FLOP/s is the core's best times the cores (GEMM
    scales with cores), bandwidth the core's best (cores share the memory bus), so they read the
    same on a quiet and a loaded machine. Where NumPy's BLAS threads cannot be set, its default
    threads are timed by wall clock instead (`peak_basis` says which)."""
    cores = os.cpu_count() or 1
    with one_blas_thread() as single:
        fl = matmul_samples(512, 20 if quick else 60, single=single)
        bw = bandwidth_samples(128 if quick else 256, 32 if quick else 96, single=single)
    scale = cores if single else 1
    return {
        "matmul_flops": max(fl) * scale,
        "bandwidth_bytes_per_s": max(bw),
        "matmul_flops_spread": spread(np.asarray(fl) * scale),
        "bandwidth_spread": spread(bw),
        "peak_basis": f"one core's best GEMM x {cores} cores; one core's streaming bandwidth"
        if single
        else "BLAS default threads, wall clock",
    }


def measure_matmul_flops(n: int = 512, repeats: int = 20) -> float:
    """Best achieved FP32 GEMM FLOP/s over `repeats` n x n x n products (BLAS default threads, wall clock)."""
    return max(matmul_samples(n, repeats))


def measure_bandwidth(mbytes: int = 128, repeats: int = 32) -> float:
    """Best achieved read bandwidth (bytes/s) of 16 MB matrix-vector slices of an `mbytes` matrix."""
    return max(bandwidth_samples(mbytes, repeats))


def measure_interleaved(
    measure: Callable[[int, int], float],
    points: Sequence[tuple[int, int]],
    budget_s: float,
    min_rounds: int = MIN_ROUNDS,
    max_rounds: int = MAX_ROUNDS,
    seed: int = 0,
) -> list[list[float]]:
    """Samples of `measure(batch, context)` for every point, taken in rounds: one sample per point per
    round, in a fresh random order, until `budget_s` seconds are spent after the first round (which also
    pays for setting each point up), at least `min_rounds` and at most `max_rounds` rounds."""
    rng = np.random.default_rng(seed)
    samples: list[list[float]] = [[] for _ in points]
    start = 0.0
    for r in range(max(max_rounds, 1)):
        if r >= max(min_rounds, 1) and time.perf_counter() - start >= budget_s:
            break
        for i in rng.permutation(len(points)):
            b, ctx = points[i]
            samples[i].append(float(measure(b, ctx)))
        if r == 0:
            start = time.perf_counter()
    return samples


def _fit_additive(c: np.ndarray, m: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """t = a c + b m + o with a, b, o >= 0 (a = 1/MFU, b = 1/MBU), rows weighted by 1/t (relative error)."""
    A = np.stack([c, m, np.ones_like(c)], axis=1) / t[:, None]
    (a, b, o), _ = nnls(A, np.ones_like(t))
    # NNLS may return round-off (1e-17) instead of an exact 0: a term adding under a millionth of the time is 0
    a, b = (x if x * float(np.sum(v)) > 1e-6 * float(np.sum(t)) else 0.0 for x, v in ((a, c), (b, m)))
    return float(a), float(b), float(o)


_GRID = np.geomspace(1e-3, 10.0, 80)  # efficiencies tried by the overlapped fit (peaks are per core, so MBU may pass 1)


def _fit_overlapped(c: np.ndarray, m: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """t = max(c / f, m / g) + o: grid over (f, g), o = the median residual (>= 0); least mean relative error."""
    core = np.maximum(c / _GRID[:, None, None], m / _GRID[None, :, None])  # (F, G, n)
    ov = np.maximum(np.median(t - core, axis=-1), 0.0)  # (F, G)
    err = np.mean(np.abs(core + ov[..., None] - t) / t, axis=-1)
    i, j = np.unravel_index(np.argmin(err), err.shape)
    return float(_GRID[i]), float(_GRID[j]), float(ov[i, j])


def _predict(overlap: bool, p: tuple[float, float, float], c: np.ndarray, m: np.ndarray) -> np.ndarray:
    if overlap:
        f, g, o = p
        return np.maximum(c / f, m / g) + o
    a, b, o = p
    return a * c + b * m + o


def fit_efficiency(compute_s: np.ndarray, memory_s: np.ndarray, measured_s: np.ndarray) -> dict:
    """Fit MFU, MBU and a fixed overhead so the roofline matches measured step times (see module doc).

    The model kept is the one that predicts points left out of its fit better (leave-one-out mean
    relative error, with 5 or more points; else the in-sample error): the overlapped model's grid
    and median overhead can fit a few noisy points closely and still predict the next one badly."""
    c, m, t = (np.asarray(x, dtype=float) for x in (compute_s, memory_s, measured_s))
    fits = {False: _fit_additive, True: _fit_overlapped}
    params = {k: fit(c, m, t) for k, fit in fits.items()}
    err = {k: float(np.mean(np.abs(_predict(k, params[k], c, m) - t) / t)) for k in fits}
    if len(t) >= 5:
        loo = {k: 0.0 for k in fits}
        for i in range(len(t)):
            keep = np.arange(len(t)) != i
            for k, fit in fits.items():
                p = fit(c[keep], m[keep], t[keep])
                loo[k] += abs(float(_predict(k, p, c[i : i + 1], m[i : i + 1])[0]) - t[i]) / t[i] / len(t)
    else:
        loo = err
    overlap = loo[True] < loo[False]
    out = {
        "overlap": overlap,
        "fit_mean_rel_error": err[overlap],
        "loo_mean_rel_error": {"additive": loo[False], "overlapped": loo[True]},
    }
    if overlap:
        f, g, o = params[True]
        return {**out, "mfu": f, "mbu": g, "step_overhead_s": o}
    a, b, o = params[False]
    # a coefficient of 0 means that term adds no measurable time (e.g. a small model whose weights
    # and KV cache stay in the CPU's caches, so the DRAM-bandwidth term is free): efficiency UNRESOLVED,
    # i.e. that time is predicted as 0, not as the peak's (which efficiency 1.0 would claim)
    return {
        **out,
        "mfu": 1.0 / a if a > 0 else UNRESOLVED,
        "mbu": 1.0 / b if b > 0 else UNRESOLVED,
        "step_overhead_s": o,
    }


def hardware_from(cal: dict) -> Hardware:
    """The "local-cpu" entry of a calibration result (the dict `calibrate` returns and stores)."""
    eff = cal.get("efficiency") or {}
    return Hardware(
        name="local-cpu",
        bf16_tflops=cal.get("matmul_flops", 1e11) / 1e12,
        fp8_tflops=None,
        fp4_tflops=None,
        hbm_gib=cal.get("ram_gib", _ram_gib()),
        hbm_tbps=cal.get("bandwidth_bytes_per_s", 1e10) / 1e12,
        scaleup_gbps=0.0,
        scaleup_domain=1,
        usd_per_hour=cal.get("usd_per_hour", 0.10),
        mfu=eff.get("mfu", 1.0),
        mbu=eff.get("mbu", 1.0),
        step_overhead_s=eff.get("step_overhead_s", 0.0),
        overlap=eff.get("overlap", False),
        source=f"calibrated {cal.get('measured_at', '')}".strip() if cal else "uncalibrated default",
    )


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
    return hardware_from(cal)


def _check_points(name: str, points) -> list[tuple[int, int]]:
    try:
        out = [(int(b), int(c)) for b, c in points]
    except (TypeError, ValueError):
        raise UserError(f"calibrate: {name} must be (batch, context) pairs of integers, got {points!r}") from None
    if any(b < 1 or c < 1 for b, c in out):
        raise UserError(f"calibrate: every {name} (batch, context) must be >= 1, got {points!r}")
    return out


def calibrate(
    measure_decode: Callable[[int, int], float] | None = None,
    model=None,
    points=DEFAULT_POINTS,
    weights_dtype: str = "fp32",
    kv_dtype: str = "fp32",
    path: str | Path | None = None,
    quick: bool = False,
    save: bool = True,
    holdout=(),
    budget_s: float | None = None,
) -> dict:
    """Measure this machine's peaks and, given `measure_decode` and `model` (a ModelSpec, catalog name or
    config.json path), fit MFU/MBU/overhead to the engine's decode steps at `points`. `holdout` points are
    measured in the same interleaved rounds but left out of the fit: `result["holdout"]` compares the
    calibrated prediction with them. `budget_s`: seconds of decode rounds after the first (default 6 quick, 12 full; MAX_ROUNDS may end it sooner).
    Stores and returns the result; every measured time carries its spread (min, median, max, n)."""
    from scalinglab.tokenomics.catalog import get_model
    from scalinglab.tokenomics.memory import ServeConfig
    from scalinglab.tokenomics.roofline import StepModel

    t0, load0 = time.perf_counter(), _load()
    peaks = measure_peaks(quick)
    flops, bws = peaks["matmul_flops"], peaks["bandwidth_bytes_per_s"]
    result = {
        "machine": f"{os.cpu_count()}-core {os.uname().machine}",
        **peaks,
        "ram_gib": _ram_gib(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "efficiency": None,
        "points": [],
        "holdout": [],
    }
    if measure_decode is not None:
        if model is None:
            raise ValueError("calibrate: measure_decode needs the engine's `model` (ModelSpec, name or config path)")
        fit_pts, held = _check_points("points", points), _check_points("holdout", holdout)
        if len(fit_pts) < 3:
            raise UserError(
                f"calibrate: need at least 3 (batch, context) points to fit MFU, MBU and overhead, got {len(fit_pts)}"
            )
        spec = get_model(model) if isinstance(model, (str, Path)) else model
        raw = Hardware(
            "local-cpu-raw",
            flops / 1e12,
            None,
            None,
            _ram_gib(),
            bws / 1e12,
            0.0,
            1,
            0.0,
            mfu=1.0,
            mbu=1.0,
            overlap=False,
        )
        cfg = ServeConfig(weights_dtype=weights_dtype, kv_dtype=kv_dtype)
        step = StepModel(spec, raw, cfg)
        budget = BUDGET_S[bool(quick)] if budget_s is None else budget_s
        samples = measure_interleaved(measure_decode, fit_pts + held, budget)
        best = [min(s) for s in samples]
        cm = np.array([(step.decode(b, c).compute_s, step.decode(b, c).memory_s) for b, c in fit_pts])
        eff = fit_efficiency(cm[:, 0], cm[:, 1], np.array(best[: len(fit_pts)]))
        result.update(efficiency=eff, model=spec.name, rounds=len(samples[0]))
        pred = StepModel(spec, hardware_from(result), cfg)
        for key, pts, off in (("points", fit_pts, 0), ("holdout", held, len(fit_pts))):
            for j, (b, c) in enumerate(pts):
                t, p = best[off + j], pred.decode(b, c).seconds
                result[key].append(
                    {
                        "batch": b,
                        "context": c,
                        "measured_s": t,
                        "predicted_s": p,
                        "rel_error": (p - t) / t,
                        "spread_s": spread(samples[off + j]),
                    }
                )
        if held:
            result["holdout_median_abs_error"] = float(np.median([abs(r["rel_error"]) for r in result["holdout"]]))
    result["seconds"] = time.perf_counter() - t0
    result["load_average"] = {"start": load0, "end": _load()}  # 1-minute load average of the machine
    if save:
        p = Path(path) if path else calibration_path()
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(p, result)
        result["path"] = str(p)
    return result
