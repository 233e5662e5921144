"""bench/gpu_check.sh end to end on CPU at tiny sizes, so the device run is never its first run."""
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_on_cpu(tmp_path, tokenizer_cache_dir):
    out = tmp_path / "check"
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--cpu", "--out", str(out),
                           f"embed.cache_dir={tokenizer_cache_dir}"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| flex_vs_sdpa_bf16 |" in proc.stdout
    r = json.loads((out / "gpu_check.json").read_text())
    assert r["mode"] == "cpu" and "failed" not in r["gpu_tests"]
    assert "skipped" in r["gpu_tests"]  # the gpu tests were found (and skip without CUDA)
    flex = r["flex_vs_sdpa_bf16"]
    assert flex["users_in_batch"] > flex["packed_rows"]  # packed: several users share a row
    assert flex["max_abs_diff"] < 0.1 * max(flex["hidden_abs_mean"], 1e-3) + 0.05  # bf16 rounding, not a bug
    assert r["train_throughput"]["ratio_vs_recgpt_padded"] > 0
    assert r["big_model"]["params"] > 0 and r["big_model"]["tokens_per_s"] > 0
    assert r["big_model"]["mfu"] == "n/a"  # a CPU's peak is unknown
    assert {"exact"} <= set(r["predict_throughput"]) and len(r["predict_throughput"]) == 3
