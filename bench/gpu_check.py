"""One prepared device check: every figure a GPU run should record, in one table and one json file.

    bash bench/gpu_check.sh [--cpu] [--out outputs/gpu_check] [key=value ...]

Runs, on the bundled real sample (data/sample: it travels with the repository):
  1. the pipeline up to a tokenizer (prepare, corpus, embed, fit)
  2. the `gpu`-marked tests (pytest -m gpu)
  3. FlexAttention vs the SDPA reference on one packed training batch, bf16 (compiled on GPU)
  4. bench/train_throughput.py: recgpt's packed bf16 step vs the RecGPT-faithful padded reference
  5. tokens/s and MFU of a ~100M-parameter model for 50 steps
  6. a short pretraining + selection, then bench/predict_throughput.py on the sample's Steam users
`--cpu` runs every step at tiny sizes (so the GPU run is never its first run); on CPU MFU is n/a.
"""
import argparse
import dataclasses
import inspect
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO)  # the repo, not bench/ (whose modules shadow packages)
from recgpt.io import claim_until_exit  # noqa: E402

# (model and budget overrides) for --cpu and for the device
SIZES = {
    "cpu": {"big": ["model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.d_ff=128"],
            "big_steps": 4, "throughput_steps": 1, "pretrain_steps": 6, "tokens": 2048, "precision": "no",
            "datasets": "[sample_ml-100k]", "predict_on": "sample_ml-100k", "users": 100,
            # k-means codes: no tokenizer training, so the CPU run stays short
            "tokenizer": ["tokenizer.kind=rqkmeans", "tokenizer.codebook_size=64", "tokenizer.kmeans_iters=10"]},
    "gpu": {"big": ["model.n_layers=12", "model.d_model=768", "model.n_heads=12", "model.d_ff=3072"],
            "big_steps": 50, "throughput_steps": 10, "pretrain_steps": 200, "tokens": 65536, "precision": "bf16",
            "datasets": "[sample_ml-100k,sample_amazon_scientific]", "predict_on": "sample_steam", "users": 1500,
            "tokenizer": []},
}


def run(cmd: list, log: Path) -> str:
    """Runs a step as its own process (as a user would), tees its output to `log`, returns it."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    log.write_text(out)
    if proc.returncode not in (0, 5):  # pytest's 5: no test collected
        raise SystemExit(f"gpu_check: {' '.join(map(str, cmd[:4]))} ... failed (exit {proc.returncode}); see {log}")
    print(f"  {' '.join(map(str, cmd[1:4]))} ... {time.perf_counter() - started:.0f} s", flush=True)
    return out


def flex_vs_sdpa(cfg, device: str) -> dict:
    """Max |difference| of the decoder's hidden states, FlexAttention vs SDPA, on one packed batch in bf16."""
    import torch

    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig
    from recgpt.train.trainer import Trainer

    trainer = Trainer(cfg).build()
    encode_args = inspect.signature(ItemCodeDecoder.encode).parameters  # the batch also holds the loss's targets
    batch = {k: v.to(device) for k, v in trainer.stream.next()[0].items() if k in encode_args}
    config = ItemCodeDecoderConfig.from_recgpt(cfg.model, trainer.inputs.slot_vocab_sizes, trainer.inputs.text_dim or 0)
    ref = ItemCodeDecoder(config).to(device).eval()
    flex_config = ItemCodeDecoderConfig.from_recgpt(dataclasses.replace(cfg.model, attention="flex"),
                                                    trainer.inputs.slot_vocab_sizes, trainer.inputs.text_dim or 0)
    fast = ItemCodeDecoder(flex_config).to(device).eval()
    fast.load_state_dict(ref.state_dict())
    with torch.no_grad(), torch.autocast(device_type=device, dtype=torch.bfloat16):
        a = ref.encode(**batch).float()
        b = fast.encode(**batch).float()
    real = batch["segment"] != 0
    return {"packed_rows": int(real.shape[0]), "users_in_batch": int(batch["segment"].max(1).values.sum()),
            "max_abs_diff": float((a[real] - b[real]).abs().max()), "hidden_abs_mean": float(a[real].abs().mean())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--out", default="outputs/gpu_check")
    parser.add_argument("overrides", nargs="*", help="key=value for every stage (e.g. embed.cache_dir=...)")
    args = parser.parse_args(argv)
    import torch

    mode = "cpu" if args.cpu else "gpu"
    if mode == "gpu" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; use --cpu for the tiny CPU run")
    size, out = SIZES[mode], (REPO / args.out).resolve()
    claim_until_exit(out)  # a folder of this bench's (or a new one), one run at a time
    py, cli = sys.executable, [sys.executable, "-m", "recgpt.cli"]
    common = ["--config", "configs/sample.yaml", f"data.datasets={size['datasets']}",
              f"data.prepared_root={out}/prepared", f"data.corpus_dir={out}/corpus", f"tokenizer.output_dir={out}/tokenizer",
              f"run.output_root={out}/ckpt", f"embed.cache_dir={out}/embed_cache",
              f"embed.device={'cpu' if args.cpu else 'cuda'}", *size["tokenizer"], *args.overrides]
    train = [f"train.mixed_precision={size['precision']}", f"train.tokens_per_batch={size['tokens']}"]
    results = {"mode": mode, "device": torch.cuda.get_device_name() if mode == "gpu" else "cpu",
               "torch": torch.__version__}
    for stage in (["prepare"], ["corpus"], ["tokenize", "embed"], ["tokenize", "fit"]):
        run([*cli, *stage, *common], out / f"{stage[-1]}.log")

    marked = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "mark.gpu" in p.read_text())
    tests = run([py, "-m", "pytest", "-q", "-m", "gpu", *(marked or ["tests"]), "-p", "no:cacheprovider"],
                out / "gpu_tests.log")  # only the files with gpu tests: collecting the whole suite costs ~15 s
    results["gpu_tests"] = (re.findall(r"^=*\s*(.*(?:passed|skipped|failed|deselected).*?)\s*=*$", tests, re.M)
                            or ["no summary"])[-1]

    from recgpt.config import load_config

    cfg = load_config(REPO / "configs/sample.yaml", common[2:] + train + ["train.resume=false",
                                                                         f"run.output_root={out}/flex"])
    results["flex_vs_sdpa_bf16"] = flex_vs_sdpa(cfg, "cuda" if mode == "gpu" else "cpu")

    bench = run([py, "bench/train_throughput.py", "--config", "configs/sample.yaml", "--steps",
                 str(size["throughput_steps"]), "--workdir", f"{out}/throughput", *common[2:], *train],
                out / "train_throughput.log")
    results["train_throughput"] = {"ratio_vs_recgpt_padded": float(re.search(r"ratio: ([\d.]+)x", bench).group(1)),
                                   **{k: float(v.replace(",", "")) for k, v in re.findall(
                                       r"(recgpt|RecGPT) .*?: ([\d,]+) target tokens/s", bench)}}

    big = [*size["big"], f"train.max_steps={size['big_steps']}", f"train.log_every={max(1, size['big_steps'] // 5)}",
           "train.eval_every=100000", "train.save_every=100000", "run.name=big", "train.resume=false"]
    big_log = run([*cli, "pretrain", *common, *train, *big], out / "big.log")
    rows = [json.loads(line) for line in (out / "ckpt/big/metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    params = re.search(r"model: ([\d,]+) parameters", big_log)
    results["big_model"] = {"params": int(params.group(1).replace(",", "")) if params else None, "steps": size["big_steps"],
                            "tokens_per_s": rows[-1]["tokens_per_s"], "mfu": rows[-1].get("mfu", "n/a")}

    # the code recipe: predict_throughput times the search over item codes (exact, trie beam, RecGPT's reference)
    small = [f"train.max_steps={size['pretrain_steps']}", "run.name=small", "train.resume=false", "model.recipe=code"]
    run([*cli, "pretrain", *common, *train, *small], out / "small.log")
    run([*cli, "eval", *common, "model.recipe=code", "--ckpt", f"{out}/ckpt/small"], out / "eval.log")
    pred = run([py, "bench/predict_throughput.py", *common, "model.recipe=code", f"predict.model_dir={out}/ckpt/small/best",
                f"predict.max_users={size['users']}", "--dataset", size["predict_on"]],
               out / "predict_throughput.log")
    results["predict_throughput"] = {name.strip(): {"search_users_s": float(s), "x_ref": float(x)} for name, s, x in
                                     re.findall(r"^(exact|trie beam \d+|reference[^\d]*?\d+/\d+/\d+\))\s+([\d.]+)\s+([\d.]+)",
                                                pred, re.M)}
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2))
    table = "| check | figure |\n|---|---|\n" + "\n".join(
        f"| {key} | {json.dumps(value) if isinstance(value, dict) else value} |" for key, value in results.items())
    print("\n" + table)
    print(f"\nwritten: {out / 'gpu_check.json'}")
    if mode == "gpu":
        from bench.report import write_table

        write_table("gpu_check", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
