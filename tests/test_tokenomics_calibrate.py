"""Calibration: the fit recovers known efficiencies; stored results drive the "local-cpu" entry."""

import json

import numpy as np
import pytest

from scalinglab.tokenomics.calibrate import calibrate, fit_efficiency, local_hardware
from scalinglab.tokenomics.catalog import get_hardware
from scalinglab.tokenomics.hf_config import from_hf_config
from scalinglab.tokenomics.memory import ServeConfig
from scalinglab.tokenomics.roofline import StepModel

TINY = from_hf_config(
    {
        "num_hidden_layers": 4,
        "hidden_size": 512,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "intermediate_size": 1536,
        "vocab_size": 8192,
    },
    name="tiny",
)


def test_fit_recovers_additive_model():
    rng = np.random.default_rng(0)
    c, m = rng.uniform(1e-3, 1e-2, 12), rng.uniform(1e-3, 1e-2, 12)
    t = c / 0.5 + m / 0.25 + 2e-3
    f = fit_efficiency(c, m, t)
    assert not f["overlap"]
    assert f["mfu"] == pytest.approx(0.5, rel=1e-4) and f["mbu"] == pytest.approx(0.25, rel=1e-4)
    assert f["step_overhead_s"] == pytest.approx(2e-3, rel=1e-3)


def test_fit_with_free_memory_term_predicts_no_memory_time():
    # a cache-resident model: step time does not depend on the bytes at DRAM bandwidth
    from scalinglab.tokenomics.calibrate import UNRESOLVED

    rng = np.random.default_rng(1)
    c, m = rng.uniform(1e-3, 1e-2, 10), rng.uniform(1e-3, 1e-2, 10)
    t = c / 0.4 + 5e-4
    f = fit_efficiency(c, m, t)
    assert not f["overlap"] and f["mbu"] == UNRESOLVED  # not 1.0, which would add m at the probe's bandwidth
    assert f["mfu"] == pytest.approx(0.4, rel=1e-3)
    pred = c / f["mfu"] + m / f["mbu"] + f["step_overhead_s"]
    assert np.max(np.abs(pred / t - 1)) < 1e-3


def test_fit_prefers_max_model_when_time_is_the_max():
    c = np.array([1e-3, 2e-3, 8e-3, 1.6e-2, 3e-3, 4e-3])
    m = np.array([9e-3, 9e-3, 2e-3, 2e-3, 6e-3, 1e-3])
    t = np.maximum(c / 0.6, m / 0.8)
    f = fit_efficiency(c, m, t)
    assert f["overlap"] and f["fit_mean_rel_error"] < 0.03


def test_calibrate_with_injected_decode_and_local_cpu(tmp_path, monkeypatch):
    path = tmp_path / "cal.json"
    monkeypatch.setenv("SCALINGLAB_CALIBRATION", str(path))
    r0 = calibrate(quick=True, save=False)  # peaks only, to build a "true" engine from
    true = local_hardware(tmp_path / "none.json").with_(
        bf16_tflops=r0["matmul_flops"] / 1e12, hbm_tbps=r0["bandwidth_bytes_per_s"] / 1e12
    )
    engine = StepModel(
        TINY,
        true.with_(mfu=0.3, mbu=0.5, step_overhead_s=1e-4, overlap=False),
        ServeConfig(weights_dtype="fp32", kv_dtype="fp32"),
    )
    calls = []

    def measure(b, ctx):  # a deterministic "engine": the roofline at known efficiencies
        calls.append((b, ctx))
        return engine.decode(b, ctx).seconds

    r = calibrate(measure, TINY, quick=True)
    # every point once per interleaved round (see test_tokenomics_calibrate_load.py)
    assert len(calls) == 8 * r["rounds"]
    assert sorted(set(calls)) == sorted((p["batch"], p["context"]) for p in r["points"])
    assert json.loads(path.read_text())["efficiency"]["overlap"] is False
    hw = get_hardware("local-cpu")
    assert hw.source.startswith("calibrated")
    pred = StepModel(TINY, hw, ServeConfig(weights_dtype="fp32", kv_dtype="fp32"))
    # peaks were re-measured, so the fitted efficiencies absorb the drift; predictions must still match
    for b, ctx in [(2, 300), (32, 700)]:
        assert pred.decode(b, ctx).seconds == pytest.approx(engine.decode(b, ctx).seconds, rel=0.02)
    assert all(abs(p["rel_error"]) < 0.02 for p in r["points"])


def test_uncalibrated_local_cpu_has_a_default(tmp_path):
    hw = local_hardware(tmp_path / "missing.json")
    assert hw.source == "uncalibrated default" and hw.bf16_tflops == pytest.approx(0.1)


SLOW_SCRIPT = """
import sys, numpy as np
from scalinglab.tokenomics.hf_config import from_hf_config
from scalinglab.tokenomics.reference_decode import NumpyDecoder
from scalinglab.tokenomics.calibrate import calibrate, local_hardware
from scalinglab.tokenomics.memory import ServeConfig
from scalinglab.tokenomics.roofline import StepModel
m = from_hf_config({"num_hidden_layers": 4, "hidden_size": 512, "num_attention_heads": 8, "num_key_value_heads": 2,
                    "intermediate_size": 1536, "vocab_size": 8192}, name="tiny")
d = NumpyDecoder(m)
calibrate(lambda b, c: d.measure(b, c, repeats=11), m, path=sys.argv[1])
s = StepModel(m, local_hardware(sys.argv[1]), ServeConfig(weights_dtype="fp32", kv_dtype="fp32"))
errs = []
for b, c in ((2, 256), (8, 128), (16, 512), (4, 1024), (32, 64), (64, 256)):  # held out from the fit
    t = d.measure(b, c, repeats=11)
    errs.append(abs(s.decode(b, c).seconds - t) / t)
print(errs)
sys.exit(0 if np.median(errs) < 0.25 else 1)
"""


@pytest.mark.slow
def test_numpy_reference_decoder_within_25_percent_after_calibration(tmp_path):
    """Acceptance: calibrated predictions of a real (NumPy) decode step on this CPU, at points held out of
    the fit, agree with measurement within 25% (median), single-threaded as on a shared 2-core box."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-c", SLOW_SCRIPT, str(tmp_path / "c.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
