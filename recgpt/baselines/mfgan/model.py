"""MFGAN (Ren et al., SIGIR 2020, arXiv 2005.10602): a SASRec+ generator refined against per-factor discriminators.

Schedule: generator MLE (the shared loop of recgpt.baselines.training, early stopping on validation) -> fakes
(a real training window whose last item is one of the generator's top predictions, the true item skipped) ->
discriminator pretraining (BCE) -> `rounds` of generator steps then discriminator steps; after each round the
generator is scored on the validation users and the best round is kept. The generator before the rounds is
kept too (`variants()`), so a report compares MFGAN with its own pretrained generator on the same users.

Generator update (`baseline.mfgan.reward`), both on training windows only:
  official  cross-entropy of every position weighted by the reward of the generator's own argmax last item
            (as RUCAIBox/MFGAN's gen_loss does): not a policy gradient, the reward only rescales the MLE step
  pg        cross-entropy + pg_weight * REINFORCE: `samples` next items drawn from the generator's softmax at
            the last position (history skipped), advantage = reward - mean reward of the other samples
The reward of a sequence is the mean over discriminators of P(real), in [0, 1].
"""
import copy
import dataclasses
import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from recgpt.baselines.mfgan.discriminator import Discriminators, discriminator_loss, fake_sequences, with_last
from recgpt.baselines.mfgan.factors import FactorTable, build_factor_table, preset
from recgpt.baselines.resume import Checkpoint
from recgpt.baselines.sasrec import SASRec, causal_ce
from recgpt.baselines.training import pad_right, training_windows, validation_ndcg

DISC, PRETRAINED = "disc.", "pretrained."


def last_logits(net, batch: torch.Tensor):
    """(all-position hidden, Float[B, N] logits predicting each row's last item from the items before it)."""
    hidden = net.hidden(batch)
    lengths = (batch >= 0).sum(1)
    return hidden, net.logits(hidden[torch.arange(len(batch)), lengths - 2])


def history_mask(batch: torch.Tensor, n_items: int) -> torch.Tensor:
    """Bool[B, N]: the items of each row before its last one."""
    lengths = (batch >= 0).sum(1)
    mask = torch.zeros(len(batch), n_items, dtype=torch.bool)
    for b in range(len(batch)):
        mask[b, batch[b, :lengths[b] - 1]] = True
    return mask


def official_loss(net, discs, batch):
    hidden, last = last_logits(net, batch)
    histories = [row[row >= 0][:-1].tolist() for row in batch]
    proposed = last.detach().masked_fill(history_mask(batch, net.n_items), float("-inf")).argmax(1)
    reward = discs.reward(with_last(histories, proposed.tolist()))
    targets = batch[:, 1:]
    ce = nn.functional.cross_entropy(net.logits(hidden[:, :-1]).transpose(1, 2), targets.clamp(min=0),
                                     reduction="none")
    keep = (targets >= 0).float()
    return ((ce * keep).sum(1) / keep.sum(1) * reward).mean(), reward.mean().item()


def policy_gradient_loss(net, discs, batch, samples: int, pg_weight: float, gen: torch.Generator):
    hidden, last = last_logits(net, batch)
    log_p = torch.log_softmax(last.masked_fill(history_mask(batch, net.n_items), float("-inf")), dim=1)
    drawn = torch.multinomial(log_p.detach().exp(), samples, replacement=True, generator=gen)  # Long[B, S]
    histories = [row[row >= 0][:-1].tolist() for row in batch]
    reward = discs.reward(with_last([h for h in histories for _ in range(samples)], drawn.flatten().tolist()))
    reward = reward.view(len(batch), samples)
    advantage = reward - (reward.sum(1, keepdim=True) - reward) / (samples - 1)  # leave-one-out baseline
    pg = -(advantage * log_p.gather(1, drawn)).mean()
    return causal_ce(hidden, batch, net.logits) + pg_weight * pg, reward.mean().item()


class MFGAN(SASRec):
    name = "mfgan"

    def state(self):
        out = super().state()
        out.update({DISC + k: v.clone() for k, v in self.discs.state_dict().items()})
        out.update({PRETRAINED + k: v.clone() for k, v in self.pretrained_state.items()})
        return out

    def load_state(self, tensors):
        own = {k: v for k, v in tensors.items() if not k.startswith((DISC, PRETRAINED))}
        super().load_state(own)
        self.pretrained_state = {k[len(PRETRAINED):]: v for k, v in tensors.items() if k.startswith(PRETRAINED)}
        disc = {k[len(DISC):]: v for k, v in tensors.items() if k.startswith(DISC)}
        sizes = [disc[f"nets.{k}.emb.weight"].shape[0] - 1 for k in range(len(disc["table"]))]
        self.discs = Discriminators(disc["table"], sizes, self.cfg.mfgan)
        self.discs.load_state_dict(disc)
        self.discs.eval()

    def extra_meta(self):
        return {"factors": self.factors.names, "factor_table": self.factors.manifest()}

    def load_extra(self, meta):
        self.factors = FactorTable.from_manifest(meta["factors"], self.discs.table, meta["factor_table"])

    def variants(self) -> dict:
        """{"mfgan-generator": the SASRec+ generator before the adversarial rounds, "mfgan-<ablation>": ...}."""
        out = {}
        for name, state in {"generator": self.pretrained_state, **getattr(self, "ablation_states", {})}.items():
            out[f"{self.name}-{name}"] = SASRec(self.cfg, self.n_items)
            out[f"{self.name}-{name}"].load_state(state)
        return out

    def fit(self, split):
        m = self.cfg.mfgan
        super().fit(split)  # generator MLE
        self.pretrained_state = {k: v.clone() for k, v in self.net.state_dict().items()}
        mle_log = self.fit_log
        self.factors = build_factor_table(m.factors or preset(split.dataset), split.items, split.item_ids, split.train)
        self.ablation_states, ablation_logs = {}, {}
        for name in m.ablations:  # each from the same pretrained generator, with fresh discriminators
            self.net.load_state_dict(self.pretrained_state)
            variant = {"official": {"reward": "official"}, "pg": {"reward": "pg"}, "mle": {"reward": "pg", "pg_weight": 0.0}}
            ablation_logs[name] = adversarial_rounds(self, split, mle_log["best_valid_ndcg@10"],
                                                     dataclasses.replace(m, **variant[name]), name)
            self.ablation_states[name] = {k: v.clone() for k, v in self.net.state_dict().items()}
        self.net.load_state_dict(self.pretrained_state)
        log = adversarial_rounds(self, split, mle_log["best_valid_ndcg@10"], m, "mfgan")
        self.fit_log = {**mle_log, "adversarial": log, "ablations": ablation_logs}
        return self


def adversarial_rounds(model: MFGAN, split, pretrained_ndcg: float, m, label: str) -> dict:
    """Discriminator pretraining then `m.rounds` alternating rounds on model.net; keeps the best round.
    Checkpointed after the pretraining and after every round (`<resume_dir>/adversarial-<label>`)."""
    from recgpt.baselines.data import subset

    cfg = model.cfg
    torch.manual_seed(cfg.seed)
    model.discs = Discriminators(model.factors.values, model.factors.sizes(), m)
    windows = training_windows(split.train, cfg.max_len + 1)
    valid = subset(split.valid, cfg.max_valid_users, cfg.seed)
    rng, gen = np.random.default_rng(cfg.seed + 1), torch.Generator().manual_seed(cfg.seed + 1)
    d_opt = torch.optim.AdamW(model.discs.parameters(), lr=m.discriminator_lr)
    g_opt = torch.optim.AdamW(model.net.parameters(), lr=m.generator_lr, weight_decay=cfg.weight_decay)
    start, rounds = time.time(), []

    def batch():
        return [windows[i] for i in rng.integers(0, len(windows), cfg.batch_size)]

    def train_discriminators(steps: int) -> float:
        model.net.eval()
        model.discs.train()
        total = 0.0
        for _ in tqdm(range(steps), desc="mfgan discriminators", leave=False):
            real = batch()
            loss = discriminator_loss(model.discs, pad_right(real), fake_sequences(model, real, m.fake_top_k, rng))
            d_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.discs.parameters(), 1.0)
            d_opt.step()
            total += loss.item()
        model.discs.eval()
        return total / max(steps, 1)

    def out_of_time() -> bool:
        return bool(m.max_seconds) and time.time() - start > m.max_seconds

    resume_dir = getattr(model, "resume_dir", None)
    checkpoint = Checkpoint(resume_dir and resume_dir / f"adversarial-{label}", cfg, m)
    optimizers, rngs, generators = {"generator": g_opt, "discriminators": d_opt}, {"batches": rng}, {"samples": gen}

    def save(done_rounds: int, finished: bool):
        checkpoint.save(done_rounds, {"net": model.net.state_dict(), "discs": model.discs.state_dict(),
                                      "best": best_state}, optimizers, rngs, generators,
                        {"rounds": rounds, "best": best, "pretrain_loss": pretrain_loss, "finished": finished,
                         "seconds": time.time() - start})

    best, best_state, first, finished = -1.0, None, 0, False
    resumed = checkpoint.load(optimizers, rngs, generators)
    if resumed:
        progress, states = resumed
        model.net.load_state_dict(states["net"])
        model.discs.load_state_dict(states["discs"])
        model.discs.eval()
        best_state = states.get("best")
        rounds, best, pretrain_loss, first, finished = (progress[k] for k in ("rounds", "best", "pretrain_loss",
                                                                              "step", "finished"))
        start -= progress["seconds"]
    else:
        pretrain_loss = train_discriminators(m.pretrain_steps)
        save(0, m.rounds == 0)
    for r in tqdm(range(first, m.rounds if not finished else first), desc="mfgan rounds", leave=False):
        model.net.train()
        losses, rewards = [], []
        for _ in range(m.generator_steps):
            rows = pad_right(batch())
            if m.reward == "official":
                loss, reward = official_loss(model.net, model.discs, rows)
            else:
                loss, reward = policy_gradient_loss(model.net, model.discs, rows, m.samples, m.pg_weight, gen)
            g_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.net.parameters(), 1.0)
            g_opt.step()
            losses.append(loss.item())
            rewards.append(reward)
        model.net.eval()
        ndcg = validation_ndcg(model, valid, cfg)
        d_loss = train_discriminators(m.discriminator_steps)
        rounds.append({"round": r + 1, "generator_loss": float(np.mean(losses)) if losses else None,
                       "mean_reward": float(np.mean(rewards)) if rewards else None, "valid_ndcg@10": ndcg,
                       "discriminator_loss": d_loss, "seconds": round(time.time() - start, 1)})
        if ndcg > best:
            best, best_state = ndcg, copy.deepcopy(model.net.state_dict())
        save(r + 1, r + 1 == m.rounds or out_of_time())
        if out_of_time():
            break
    model.net.load_state_dict(best_state)
    model.net.eval()
    return {"reward": m.reward, "pretrained_valid_ndcg@10": pretrained_ndcg, "best_valid_ndcg@10": best,
            "discriminator_pretrain_loss": pretrain_loss, "rounds": rounds, "factors": model.factors.names}
