"""Score checkpoints by held-out loss, write selection.json and export the best.

    python launch/eval.py --ckpt ckpt/<run>                 # every complete checkpoint of the run
    python launch/eval.py --ckpt ckpt/<run>/step-00001000   # one checkpoint
    accelerate launch --num_processes 4 launch/eval.py --ckpt ckpt/<run> eval.batch_tokens=65536

The run's saved config.yaml is used unless --config is given; dotted overrides come last. `recgpt launch` takes
accelerate launch's options and keeps a refusal to its one line (exit 2), without accelerate's traceback.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

from recgpt.errors import run_command  # noqa: E402
from recgpt.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_command("eval", main, sys.argv[1:]))
