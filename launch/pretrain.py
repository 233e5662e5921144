"""Pretrain the item-code decoder.

    accelerate launch [--config_file launch/accelerate/ddp.yaml] launch/pretrain.py --config configs/pretrain.yaml train.lr=3e-4

Everything (model, data, optimiser, batch size, checkpoints) comes from the recgpt config; the accelerate
config only says how many processes and which backend (DDP, DeepSpeed ZeRO 1/2/3). A refused input is one line
and exit 2; `accelerate launch` then adds a traceback of its own, `recgpt launch` (same options) does not.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

from recgpt.errors import run_command  # noqa: E402
from recgpt.train import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command("pretrain", main, sys.argv[1:]))
