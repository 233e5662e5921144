"""A clean run prints no warning it does not mean: a tied code head is saved by accelerate's save_state without the
"Removed shared tensor" warning and reloads exactly (still tied), and importing recgpt on a CPU machine keeps
DeepSpeed from warning that it found no accelerator."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fixtures_model import make_model

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("head", ["parallel", "autoregressive"])
def test_tied_weights_save_silently_and_reload_exactly(tmp_path, caplog, head):
    from accelerate import Accelerator

    from recgpt.train.objective import NextItemObjective
    from recgpt.train.trainer import drop_tied_aliases

    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    accelerator.register_save_state_pre_hook(drop_tied_aliases)
    model = accelerator.prepare(NextItemObjective(make_model(head, seed=1)))
    decoder = model.decoder
    assert decoder.head.out[0].weight is decoder.code_embedding[0].weight  # tied
    with torch.no_grad():
        for p in decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    with caplog.at_level(logging.WARNING):
        accelerator.save_state(str(tmp_path / "state"), safe_serialization=True)
    assert not [r for r in caplog.records if "shared tensor" in r.getMessage()]
    fresh = NextItemObjective(make_model(head, seed=2))
    other = Accelerator(cpu=True)
    fresh = other.prepare(fresh)
    other.load_state(str(tmp_path / "state"))  # strict: every key present
    for name, value in decoder.state_dict().items():
        assert torch.equal(fresh.decoder.state_dict()[name], value), name
    assert fresh.decoder.head.out[0].weight is fresh.decoder.code_embedding[0].weight  # still one matrix


def test_importing_recgpt_on_cpu_keeps_deepspeed_quiet():
    pytest.importorskip("deepspeed")
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    code = "import recgpt, torch, deepspeed; print(torch.cuda.is_available(), os.environ.get('DS_ACCELERATOR'))"
    out = subprocess.run([sys.executable, "-c", "import os; " + code], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    if out.stdout.split()[0] == "False":
        assert out.stdout.split()[1] == "cpu" and "Setting accelerator to CPU" not in out.stderr + out.stdout
