"""Training throughput: recgpt's trainer step vs a RecGPT-faithful reference, same corpus, same model size.

Reference (as in HKUDS/RecGPT): transformers GPT-2 with a block-causal mask, one code vocabulary shared by
the slots, every user flattened to codes and right-padded to 1024 tokens, batch 40, no packing.
recgpt: the Trainer's own train_step (packed rows, segment ids, token budget from train.tokens_per_batch).
Figure of merit: real next-item target tokens per second (padding does no useful work).

    python bench/train_throughput.py --config configs/tiny.yaml [--steps 3] [key=value ...]
    python bench/train_throughput.py --config configs/text_dense.yaml --variant "model.codes.output=factorized ..." [key=value ...]

--variant compares two recgpt models instead (the config + overrides vs the same plus the variant's
overrides: same corpus, same token budget), interleaved in one run, and prints their ratio.

Needs the corpus (data.corpus_dir) and tokenizer (tokenizer.output_dir) of the config.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (whose modules shadow packages)

from recgpt.config import load_config  # noqa: E402

SEQ_TOKENS, BATCH = 1024, 40


def reference_model(cfg, vocab: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    m = cfg.model
    config = GPT2Config(vocab_size=vocab, n_positions=SEQ_TOKENS, n_embd=m.d_model, n_layer=m.n_layers,
                        n_head=m.n_heads, n_inner=m.d_ff, resid_pdrop=m.dropout, embd_pdrop=m.dropout,
                        attn_pdrop=m.dropout)
    return GPT2LMHeadModel(config)


def reference_batch(seqs: list, codes: torch.Tensor, pad: int):
    """Codes flattened per user, right-padded to 1024; block-causal mask over absolute item positions."""
    n_slots = codes.shape[1]
    max_items = SEQ_TOKENS // n_slots
    ids = torch.full((len(seqs), SEQ_TOKENS), pad, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    n_items = torch.zeros(len(seqs), dtype=torch.long)
    for b, s in enumerate(seqs):
        s = s[-max_items:]
        flat = codes[torch.as_tensor(s)].long().reshape(-1)
        ids[b, :len(flat)] = flat
        labels[b, :len(flat) - n_slots] = flat[n_slots:]  # token (j, k) predicts code k of item j+1
        n_items[b] = len(s)
    item = torch.arange(SEQ_TOKENS) // n_slots
    real = item[None] < n_items[:, None]
    mask = (item[None, :, None] >= item[None, None, :]) & real[:, None, :]  # [B, T, T]: query row, key column
    mask = mask | torch.eye(SEQ_TOKENS, dtype=torch.bool)[None]
    return ids, labels, mask[:, None], int((labels != -100).sum())


def reference_stepper(cfg, inputs, order):
    """A closure running one reference training step; returns its real target tokens."""
    vocab = max(inputs.slot_vocab_sizes) + 1  # shared vocabulary + pad id, as RecGPT
    model = reference_model(cfg, vocab).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    state = {"step": 0}

    def step() -> int:
        chunk = order[state["step"] * BATCH:(state["step"] + 1) * BATCH]
        state["step"] += 1
        seqs = inputs.train.take(chunk)
        ids, labels, mask, n_targets = reference_batch([seqs[int(i)] for i in chunk], inputs.codes, vocab - 1)
        additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
        logits = model(input_ids=ids, attention_mask=additive).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1), ignore_index=-100)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return n_targets

    return step, sum(p.numel() for p in model.parameters())


def recgpt_stepper(cfg, inputs):
    from recgpt.train.trainer import Trainer

    trainer = Trainer(cfg, inputs).build()

    def step() -> int:
        return int(trainer.train_step()[1][1])

    return step, trainer.n_params


def measure(steppers: dict, steps: int) -> dict:
    """Interleaved rounds (one step of each per round) so that load on a shared machine hits both alike;
    the first round warms up and is not counted. Returns target tokens/s per stepper."""
    seconds = {name: 0.0 for name in steppers}
    targets = {name: 0 for name in steppers}
    for round_ in range(steps + 1):
        for name, step in steppers.items():
            started = time.perf_counter()
            n = step()
            if round_:
                seconds[name] += time.perf_counter() - started
                targets[name] += n
    return {name: targets[name] / seconds[name] for name in steppers}


def compare_variant(args) -> int:
    from recgpt.train.inputs import load_training_inputs

    common = [f"run.output_root={args.workdir}", "train.resume=false", "train.trackers=[jsonl]", *args.overrides]
    base_cfg = load_config(args.config, [*common, "run.name=base"])
    variant_cfg = load_config(args.config, [*common, *args.variant.split(), "run.name=variant"])
    torch.manual_seed(0)
    inputs = load_training_inputs(base_cfg)
    base_step, n_base = recgpt_stepper(base_cfg, inputs)
    variant_step, n_variant = recgpt_stepper(variant_cfg, inputs)
    rates = measure({"base": base_step, "variant": variant_step}, args.steps)
    print(f"corpus {base_cfg.data.corpus_dir}: {len(inputs.train)} train sequences; torch threads "
          f"{torch.get_num_threads()}; {base_cfg.train.tokens_per_batch} tokens/micro-batch")
    print(f"base ({' '.join(args.overrides)}): {n_base / 1e6:.2f}M params, {rates['base']:,.0f} target tokens/s")
    print(f"variant (+ {args.variant}): {n_variant / 1e6:.2f}M params, {rates['variant']:,.0f} target tokens/s")
    print(f"ratio variant / base: {rates['variant'] / rates['base']:.2f}x")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny.yaml")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each (after one warm-up round)")
    parser.add_argument("--workdir", default="/tmp/recgpt_bench_train")
    parser.add_argument("--variant", help="space-separated overrides of a second recgpt model to compare against")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.variant:
        return compare_variant(args)
    # Same token budget per step as the reference's batch (40 x 1024) unless overridden.
    cfg = load_config(args.config, [f"run.output_root={args.workdir}", "train.resume=false", "train.trackers=[jsonl]",
                                    f"train.tokens_per_batch={BATCH * SEQ_TOKENS}", *args.overrides])
    from recgpt.train.inputs import load_training_inputs

    torch.manual_seed(0)
    inputs = load_training_inputs(cfg)
    order = torch.randperm(len(inputs.train), generator=torch.Generator().manual_seed(0)).tolist()
    ours_step, n_ours = recgpt_stepper(cfg, inputs)
    ref_step, n_ref = reference_stepper(cfg, inputs, order)
    rates = measure({"recgpt": ours_step, "reference": ref_step}, args.steps)
    ours, ref = rates["recgpt"], rates["reference"]
    print(f"corpus {cfg.data.corpus_dir}: {len(inputs.train)} train sequences, {inputs.n_slots} codes per item, "
          f"mean {inputs.train.lengths.mean():.1f} items per sequence; torch threads {torch.get_num_threads()}")
    print(f"model: {cfg.model.n_layers} layers x {cfg.model.d_model}; params recgpt {n_ours / 1e6:.2f}M, "
          f"reference GPT-2 {n_ref / 1e6:.2f}M; precision {cfg.train.mixed_precision}")
    print(f"recgpt trainer step (packed, {cfg.train.tokens_per_batch} tokens/micro-batch): {ours:,.0f} target tokens/s")
    print(f"RecGPT reference (GPT-2, batch {BATCH} x {SEQ_TOKENS} padded tokens):        {ref:,.0f} target tokens/s")
    print(f"ratio: {ours / ref:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
