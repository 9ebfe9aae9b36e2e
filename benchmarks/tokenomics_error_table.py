"""Predictions of scalinglab.tokenomics vs the public serving measurements in
shared/reference/serving_measurements.csv, as a markdown error table.

    .venv/bin/python benchmarks/tokenomics_error_table.py                 # print the table
    .venv/bin/python benchmarks/tokenomics_error_table.py --write docs/tokenomics.md

Rows compared:
  - TensorRT-LLM perf-overview (trtllm-bench, offline at infinite rate): total output tok/s of one
    TP group. Simulated offline with the catalog defaults (MFU 0.6, MBU 0.8), FP8 rows as FP8 weights
    + FP8 KV cache, FP4 rows as NVFP4 weights + FP8 KV (ModelOpt checkpoints quantise the KV cache);
    max_num_seqs 2048, 8192-token step budget, 95% of HBM for the engine (trtllm-bench settings).
  - NVIDIA NIM (AIPerf, closed loop at a concurrency): TTFT, ITL (= TPOT), output tok/s.
  - DeepSeek's and SGLang's published per-node throughputs (decode and prefill pools with large EP).
  - SemiAnalysis's H200-vs-H100 ratios for Llama-3.1-405B long reasoning.
Rows not compared: MLPerf totals (secondary sources, model not in the catalog), microbenchmarks
(used for MFU/MBU defaults instead), InferenceMAX TCO ratios, aiconfigurator (predictions, not measurements).
"""

from __future__ import annotations

import argparse
import csv
import re
import time
from pathlib import Path

import numpy as np

from scalinglab.tokenomics.catalog import get_hardware, get_model
from scalinglab.tokenomics.hf_config import from_hf_config
from scalinglab.tokenomics.memory import Parallel, ServeConfig, memory_plan
from scalinglab.tokenomics.roofline import StepModel
from scalinglab.tokenomics.serve import Workload, simulate

ROOT = Path(__file__).resolve().parents[1]
CSV = Path("/work/shared/reference/serving_measurements.csv")
if not CSV.exists():
    CSV = ROOT.parent / "shared" / "reference" / "serving_measurements.csv"

# Qwen/Qwen3-235B-A22B config.json (head_dim 128; all 94 layers MoE). Not in the catalog, used only here.
QWEN3_235B = from_hf_config(
    {
        "model_type": "qwen3_moe",
        "num_hidden_layers": 94,
        "hidden_size": 4096,
        "num_attention_heads": 64,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "intermediate_size": 12288,
        "moe_intermediate_size": 1536,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "vocab_size": 151936,
    },
    name="Qwen3-235B-A22B",
)


def model_for(name: str):
    if name.startswith("Qwen3-235B"):
        return QWEN3_235B
    return get_model(name.replace("-Instruct", "").replace("Llama-3.3-70B", "Llama-3.1-70B"))


EFF: dict = {}  # --mfu/--mbu overrides for a sensitivity run


def hw_for(name: str):
    hw = get_hardware(name.split()[0])
    return hw.with_(**EFF) if EFF else hw


def cfg_for(precision: str, n: int, model, **kw) -> ServeConfig:
    p = precision.upper()
    wdt = "fp4" if "FP4" in p else "fp8" if "FP8" in p else "bf16"
    par = Parallel(tp=n) if not model.is_moe else Parallel(tp=n, ep=n)
    return ServeConfig(par=par, weights_dtype=wdt, kv_dtype="fp8" if wdt != "bf16" else "bf16", **kw)


def trtllm_rows(rows):
    out = []
    for r in rows:
        if not r["source"].startswith("NVIDIA/TensorRT-LLM"):
            continue
        m, hw, n = model_for(r["model"]), hw_for(r["hardware"]), int(r["n_gpus"])
        isl, osl = int(r["input_len"]), int(r["output_len"])
        cfg = cfg_for(r["precision"], n, m, gpu_memory_utilization=0.95, max_num_seqs=2048)
        step = StepModel(m, hw, cfg)
        cap = memory_plan(m, hw, cfg).max_batch(isl + osl)
        n_req = int(min(max(3 * cap, 300), 3000))
        pred = simulate(step, Workload(str(isl), str(osl), n_requests=n_req))["output_tokens_per_s"]
        out.append(
            (
                "TRT-LLM",
                f"{r['model']}",
                f"{n}x{r['hardware']} {r['precision']}",
                f"{isl}/{osl}",
                "output tok/s",
                float(r["value"]),
                pred,
            )
        )
    return out


def nim_rows(rows):
    out, groups = [], {}
    for r in rows:
        if r["source"].startswith("docs.nvidia.com/nim"):
            groups.setdefault((r["input_len"], r["output_len"], int(r["batch_or_concurrency"])), {})[r["metric"]] = r
    for (isl, osl, c), metrics in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2])):
        r0 = next(iter(metrics.values()))
        m, hw, n = model_for(r0["model"]), hw_for(r0["hardware"]), int(r0["n_gpus"])
        step = StepModel(m, hw, cfg_for(r0["precision"], n, m))
        sim = simulate(step, Workload(isl, osl, n_requests=max(8 * c, 40), concurrency=c, warmup=2 * c))
        pred = {
            "ttft_mean": sim["ttft_s"]["mean"] * 1e3,
            "itl_mean": sim["tpot_s"]["mean"] * 1e3,
            "output_throughput": sim["output_tokens_per_s"],
        }
        for k in ("ttft_mean", "itl_mean", "output_throughput"):
            if k in metrics:
                unit = "ms" if k != "output_throughput" else "tok/s"
                out.append(
                    (
                        "NIM",
                        r0["model"],
                        f"{n}x{r0['hardware']} FP8",
                        f"{isl}/{osl} c={c}",
                        f"{k} ({unit})",
                        float(metrics[k]["value"]),
                        pred[k],
                    )
                )
    return out


def fleet_rows():
    """DeepSeek (H800) and SGLang (H100) large-EP pools. Batch: the KV-limited maximum, capped at 256
    sequences per GPU (an assumption: neither source states its batch)."""
    out = []
    ds = get_model("DeepSeek-V3")
    # DeepSeek decode: EP144 (18 nodes), data-parallel attention, avg KV length 4,989 per output token
    for label, hw, ep, ctx, meas in (
        ("DeepSeek decode EP144", "H800", 144, 4989, 14800),
        ("SGLang decode EP72", "H100", 72, 2000 + 100, 22300),
    ):
        cfg = ServeConfig(par=Parallel(tp=1, ep=ep), weights_dtype="fp8", kv_dtype="bf16", max_num_seqs=256)
        step = StepModel(ds, hw_for(hw), cfg)
        b = memory_plan(ds, hw_for(hw), cfg).max_batch(ctx)
        pred = b / step.decode(b, ctx).seconds / (ep / 8)
        out.append(
            ("fleet", "DeepSeek-V3/R1", f"{label} ({b // ep}/GPU)", f"ctx {ctx}", "output tok/s per node", meas, pred)
        )
    # prefill pools: tokens computed per node per second (DeepSeek's 73.7k includes 56.3% cache hits)
    for label, hw, ep, isl, meas in (
        ("DeepSeek prefill EP32 (computed tokens)", "H800", 32, 4000, 73700 * (1 - 0.563)),
        ("SGLang prefill EP32", "H100", 32, 4000, 50302),
    ):
        cfg = ServeConfig(par=Parallel(tp=1, ep=ep), weights_dtype="fp8", max_num_batched_tokens=16384)
        step = StepModel(ds, hw_for(hw), cfg)
        per_group = max(1, 16384 // isl)
        st = step.prefill(per_group * ep, isl)
        pred = per_group * ep * isl / st.seconds / (ep / 8)
        out.append(("fleet", "DeepSeek-V3/R1", label, f"isl {isl}", "input tok/s per node", meas, pred))
    return out


def ratio_rows():
    """SemiAnalysis: Llama-3.1-405B FP8 on 8 GPUs, ~1k in / 19k out: H200 vs H100."""
    m = get_model("Llama-3.1-405B")
    cfg = ServeConfig(par=Parallel(tp=8), weights_dtype="fp8", max_num_seqs=2048)
    h100, h200 = (StepModel(m, hw_for(h), cfg) for h in ("H100", "H200"))
    b = 16  # iso batch: both fit 16 sequences of 20k tokens
    inter = h100.decode(b, 10_000).seconds / h200.decode(b, 10_000).seconds
    w = Workload("1000", "19000", n_requests=200)
    thr = simulate(h200, w)["output_tokens_per_s"] / simulate(h100, w)["output_tokens_per_s"]
    return [
        (
            "SemiAnalysis",
            "Llama-3.1-405B",
            "8xH200 vs 8xH100 FP8",
            "1k/19k iso batch 16",
            "interactivity gain (x)",
            1.43,
            inter,
        ),
        ("SemiAnalysis", "Llama-3.1-405B", "8xH200 vs 8xH100 FP8", "1k/19k max batch", "throughput gain (x)", 3.0, thr),
    ]


def table(rows) -> str:
    lines = [
        "| source | model | setup | in/out | metric | measured | predicted | error |",
        "|---|---|---|---|---|---:|---:|---:|",
    ]
    for src, model, setup, io, metric, meas, pred in rows:
        err = (pred - meas) / meas
        lines.append(f"| {src} | {model} | {setup} | {io} | {metric} | {meas:,.4g} | {pred:,.4g} | {err:+.0%} |")
    return "\n".join(lines)


def summary(rows) -> str:
    out = ["| group | rows | median abs error | median signed error | within 25% |", "|---|---:|---:|---:|---:|"]
    groups: dict[str, list[float]] = {}
    for src, model, setup, io, metric, meas, pred in rows:
        key = f"{src} {metric}" if src == "NIM" else f"{src} {model}" if src == "TRT-LLM" else src
        groups.setdefault(key, []).append((pred - meas) / meas)
    for k, e in groups.items():
        a = np.abs(e)
        out.append(f"| {k} | {len(e)} | {np.median(a):.0%} | {np.median(e):+.0%} | {np.mean(a <= 0.25):.0%} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", type=Path, help="replace the error-table section of this markdown file")
    ap.add_argument("--mfu", type=float, help="override every chip's MFU (sensitivity run)")
    ap.add_argument("--mbu", type=float, help="override every chip's MBU (sensitivity run)")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    EFF.update({k: v for k, v in (("mfu", args.mfu), ("mbu", args.mbu)) if v is not None})
    t = time.perf_counter()
    rows = list(csv.DictReader(CSV.open()))
    results = trtllm_rows(rows) + nim_rows(rows) + fleet_rows() + ratio_rows()
    secs = time.perf_counter() - t
    if args.summary_only:
        print(summary(results))
        return
    text = (
        f"{summary(results)}\n\n{table(results)}\n\n"
        f"_{len(results)} rows, generated by `benchmarks/tokenomics_error_table.py` in {secs:.0f} s "
        f"(2-core x86_64 CPU)._"
    )
    if args.write:
        doc = args.write.read_text()
        start, end = "<!-- error-table:start -->", "<!-- error-table:end -->"
        if start not in doc or end not in doc:
            raise SystemExit(f"{args.write}: needs {start} and {end} markers")
        new = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{text}\n{end}", doc, flags=re.S)
        args.write.write_text(new)
    print(text)


if __name__ == "__main__":
    main()
