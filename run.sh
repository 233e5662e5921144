#!/usr/bin/env bash
# The whole recgpt pipeline on the bundled real sample (data/sample), on CPU, in a few minutes, with the
# recommended recipe (zero_shot): import -> corpus -> embed -> tokenizer -> short pretraining -> checkpoint
# selection -> zero-shot prediction on steam (never seen in pretraining), beside content kNN, popularity and recency;
# and the relational re-ranker, trained on the MovieLens sample, on steam beside its base rule.
# Usage: ./run.sh [key=value ...]   (dotted overrides apply to every stage, e.g. train.max_steps=100)
set -euo pipefail
cd "$(dirname "$0")"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q -c requirements.lock -e ".[dev]"  # the versions the test suite is green with
recgpt=.venv/bin/recgpt
config=configs/sample.yaml

$recgpt prepare --config "$config" "$@"
$recgpt corpus --config "$config" "$@"
$recgpt tokenize embed --config "$config" "$@"
$recgpt tokenize fit --config "$config" "$@"
$recgpt pretrain --config "$config" "$@"
run_dir=$(.venv/bin/python -c "from recgpt.config import load_config; import sys; print(load_config(sys.argv[1], sys.argv[2:]).run_dir)" "$config" "$@")
$recgpt eval --config "$config" --ckpt "$run_dir" "$@"
$recgpt rerank --config "$config" "$@"  # the relational re-ranker (configs/sample.yaml's rerank: section)
for dataset in steam; do
  $recgpt predict --config "$config" --dataset "$dataset" "$@"
  $recgpt predict --config "$config" --dataset "$dataset" predict.reranker=outputs/sample/reranker \
    predict.output_dir="$run_dir/predict/$dataset-loo-reranker" "$@"
  $recgpt predict --config "$config" --dataset "$dataset" --cold "$@"
  $recgpt predict --config "$config" --dataset "$dataset" --horizon 5 --strategy rra "$@"
done
echo
echo "metrics tables:"
find "$run_dir/predict" -name metrics.md -print -exec cat {} \;
