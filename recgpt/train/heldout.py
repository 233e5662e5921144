"""Token-weighted held-out loss: sum of token losses / number of real target tokens, both summed over every
micro-batch and every rank before dividing (never a mean of batch means)."""
import math
from typing import Optional

import numpy as np
import torch

from recgpt.train.inputs import MicroBatchStream, SequenceSource, TrainingInputs


def loss_sums(objective, batch: dict, device):
    """(loss_sum, n_target_tokens) of one micro-batch, as tensors on the device; `objective` is a
    (possibly wrapped) NextItemObjective."""
    sums = objective(**{k: v.to(device, non_blocking=True) for k, v in batch.items()})
    return sums[0], sums[1]


@torch.no_grad()
def heldout_loss(objective, accelerator, source: SequenceSource, inputs: TrainingInputs, batching: str,
                 tokens_per_batch: int, row_items: int, max_batches: int = 0, by_group: bool = False,
                 progress: bool = False) -> dict:
    """{"loss", "tokens", "sequences"} overall, plus {"groups": {name: {...}}} per dataset when by_group.

    Every rank runs the same number of forward passes (a rank without a batch in the last round repeats one
    with weight 0) so that collective forwards (ZeRO-3) never hang; sums are reduced across ranks at the end.
    """
    model = objective
    was_training = model.training
    model.eval()
    groups = {"all": np.arange(len(source))}
    if by_group and source.groups is not None:
        names = np.asarray(source.groups, dtype=object)
        groups.update({str(g): np.flatnonzero(names == g) for g in sorted(set(source.groups))})
    sums = {}
    for name, keep in groups.items():
        if name == "all" and len(groups) > 1:
            continue  # the overall figure is the sum of the per-dataset sums
        sub = source if len(keep) == len(source) else source.subset(keep)
        stream = MicroBatchStream(sub, inputs, batching, row_items, tokens_per_batch, seed=0,
                                  rank=accelerator.process_index, world=accelerator.num_processes, shuffle=False)
        with accelerator.autocast():
            sums[name] = _sums(model, accelerator, stream, max_batches, progress and name != "all")
    if "all" not in sums:
        sums["all"] = torch.stack(list(sums.values())).sum(0)
    if was_training:
        model.train()
    stacked = accelerator.reduce(torch.stack([sums[k] for k in sums]), reduction="sum").cpu().double()
    result = {}
    for name, (loss_sum, n_tokens, n_seqs) in zip(sums, stacked.tolist()):
        result[name] = {"loss": loss_sum / n_tokens if n_tokens else math.nan,
                        "tokens": int(n_tokens), "sequences": int(n_seqs)}
    out = dict(result.pop("all"))
    if by_group:
        out["groups"] = result
    return out


def _sums(model, accelerator, stream: MicroBatchStream, max_batches: int, progress: bool) -> torch.Tensor:
    world, rank = accelerator.num_processes, accelerator.process_index
    plan = stream.plan_any(0)
    n_batches = plan.n_batches if not max_batches else min(plan.n_batches, max_batches * world)
    rounds = -(-n_batches // world)
    total = torch.zeros(3, dtype=torch.float64, device=accelerator.device)
    iterator = range(rounds)
    if progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="held-out", leave=False)
    for r in iterator:
        b = r * world + rank
        weight = 1.0 if b < n_batches else 0.0
        batch = stream.batch(b if b < n_batches else 0)
        loss_sum, n_tokens = loss_sums(model, batch, accelerator.device)
        n_seqs = float(sum(len(row) for row in plan.batch_pieces(b if b < n_batches else 0)))
        total += weight * torch.stack([loss_sum.double(), n_tokens.double(),
                                       torch.tensor(n_seqs, dtype=torch.float64, device=total.device)])
    return total


def token_weighted(loss_sums_and_counts) -> Optional[float]:
    """Reference: loss = sum of sums / sum of counts over any list of (loss_sum, n_tokens) pairs."""
    total = sum(float(s) for s, _ in loss_sums_and_counts)
    count = sum(float(n) for _, n in loss_sums_and_counts)
    return total / count if count else None
