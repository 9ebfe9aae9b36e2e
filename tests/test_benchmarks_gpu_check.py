"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end with tiny shapes on a CPU.

A lent GPU session has minutes, not hours: its one script must not fail on a logic error.
This runs every part at tiny sizes and checks the JSON it writes.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_small_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--small", "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["copy"]["bytes_per_s"] > 0
    a = res["case_a"]
    for side in ("scalinglab", "scalinglab_compiled", "transformers"):
        assert a[side]["tokens_per_s"] > 0, a
    assert a["scalinglab"]["speedup"] == a["scalinglab"]["tokens_per_s"] / a["transformers"]["tokens_per_s"]
    for p in res["case_b"]["points"]:
        for side in ("eager", "compiled"):
            assert p[side]["step_ms"] > 0 and 0 < p[side]["fraction_of_copy"], p
        assert "error_h200_catalog" in p and "error_roofline_at_copy_bw" in p
