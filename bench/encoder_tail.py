"""Content kNN with the text encoder's last layer trained on next-item pairs, against plain MiniLM kNN.

The alignment bench (bench/text_alignment.py) trains a residual adapter over frozen MiniLM vectors; the issue's
other form trains the encoder's last layers. Here MiniLM's layer 6 of 6 (with its mean pooling and
normalization) is trained and layers 1-5 stay frozen: their token states are computed once per item, the
last layer is trained with the same symmetric InfoNCE on (item, next item) pairs of the target's largest
mix (every batch from one domain; each catalog's vectors centered on its epoch-0 mean, as the recipes read
them). After every epoch (epoch 0: plain MiniLM) centered content kNN NDCG@10 is measured on the target's fit
domains and the epoch with the best mean is chosen there; only then is the target read (LOO and cold).

    python bench/encoder_tail.py [--targets amazon_scientific,amazon14_beauty] [--epochs 3] [--lr 3e-5]
        [--max-pairs 24000] [--batch 256] [--train-tokens 32] [--max-users 2000] [--report R.md]
"""
import argparse
import copy
import math
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]


class TokenStates:
    """Layer-5 token states of a catalog's item texts, packed fp16 [sum of lengths, 384] with offsets."""

    def __init__(self, bert, tokenizer, texts, max_length=256, batch=128):
        import torch

        enc = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        self.lengths = np.array([len(e) for e in enc])
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.states = torch.empty(int(self.offsets[-1]), bert.config.hidden_size, dtype=torch.float16)
        order = np.argsort(-self.lengths, kind="stable")
        with torch.no_grad():
            for s in range(0, len(order), batch):
                rows = order[s:s + batch]
                width = int(self.lengths[rows].max())
                ids = torch.zeros(len(rows), width, dtype=torch.long)
                mask = torch.zeros(len(rows), width, dtype=torch.long)
                for r, i in enumerate(rows):
                    ids[r, :self.lengths[i]] = torch.tensor(enc[i])
                    mask[r, :self.lengths[i]] = 1
                hidden = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2]
                for r, i in enumerate(rows):
                    self.states[self.offsets[i]:self.offsets[i + 1]] = hidden[r, :self.lengths[i]].half()

    def batch(self, rows, max_tokens=None):
        """(float [B, T, D] states, float [B, T] mask); with max_tokens, the first max_tokens - 1 and the last."""
        import torch

        pieces = []
        for i in rows:
            x = self.states[self.offsets[i]:self.offsets[i + 1]]
            if max_tokens and len(x) > max_tokens:
                x = torch.cat([x[:max_tokens - 1], x[-1:]])
            pieces.append(x)
        width = max(len(p) for p in pieces)
        out = torch.zeros(len(pieces), width, self.states.shape[1])
        mask = torch.zeros(len(pieces), width)
        for r, p in enumerate(pieces):
            out[r, :len(p)], mask[r, :len(p)] = p.float(), 1
        return out, mask


def pooled(layer, states, mask):
    """Unit mean-pooled output of the trained layer (MiniLM's pooling and normalization)."""
    import torch
    import torch.nn.functional as F

    y = layer(states, attention_mask=(1.0 - mask[:, None, None, :]) * torch.finfo(torch.float32).min)
    y = y[0] if isinstance(y, tuple) else y
    return F.normalize((y * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)


def encode_all(layer, tokens: TokenStates, batch=256):
    import torch

    order = np.argsort(-tokens.lengths, kind="stable")
    out = torch.empty(len(order), tokens.states.shape[1])
    with torch.no_grad():
        for s in range(0, len(order), batch):
            rows = order[s:s + batch]
            out[torch.from_numpy(rows)] = pooled(layer, *tokens.batch(rows))
    return out


def centered(vectors, mean=None):
    import torch.nn.functional as F

    return F.normalize(vectors - (vectors.mean(0) if mean is None else mean), dim=-1)


def load(args, name, bert, tokenizer):
    from recgpt.predict.catalog import read_catalog_items
    from recgpt.predict.transfer import read_interactions
    from recgpt.tokenizer.align import domain_of

    folder = Path(args.prepared) / name
    items = read_catalog_items(folder)
    ids = items["item_id"].astype(str).tolist()
    tokens = TokenStates(bert, tokenizer, items["text"].fillna("").astype(str).tolist())
    domain = domain_of(name, ids, np.zeros((len(ids), 1), np.float16), read_interactions(folder))
    print(f"  {name}: {len(ids)} items, {len(tokens.states)} tokens, {len(domain.pairs)} pairs", flush=True)
    return {"ids": ids, "tokens": tokens, "pairs": domain.pairs, "folder": folder}


def knn(args, dom, vectors, protocol="loo"):
    from bench.text_alignment import knn_ndcg

    return knn_ndcg(dom["folder"], dom["ids"], {k: v.numpy().astype("float16") for k, v in vectors.items()},
                    args.max_users, protocol)


def train(args, layer, sources, fits, on_epoch):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    means = {n: encode_all(layer, d["tokens"]).mean(0) for n, d in sources.items()}
    names = list(sources)
    per_epoch = sum(len(list(range(0, min(len(sources[n]["pairs"]), args.max_pairs), args.batch))) for n in names)
    steps = per_epoch * args.epochs
    opt = torch.optim.AdamW(layer.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1))))
    on_epoch(0, layer, float("nan"))
    for epoch in range(1, args.epochs + 1):
        work = []
        for d, n in enumerate(names):
            take = rng.permutation(len(sources[n]["pairs"]))[:args.max_pairs]
            work += [(n, take[s:s + args.batch]) for s in range(0, len(take), args.batch) if len(take[s:s + args.batch]) > 1]
        losses = []
        layer.train()
        for b in rng.permutation(len(work)):
            n, rows = work[b]
            pairs = torch.from_numpy(sources[n]["pairs"][rows])
            items, inverse = torch.unique(pairs.flatten(), return_inverse=True)
            vec = centered(pooled(layer, *sources[n]["tokens"].batch(items.numpy(), args.train_tokens)), means[n])
            a, p = vec[inverse.view(-1, 2)[:, 0]], vec[inverse.view(-1, 2)[:, 1]]
            logits = a @ p.t() / args.temperature
            eye = torch.eye(len(pairs), dtype=torch.bool)
            fwd = logits.masked_fill((pairs[:, 1][None] == pairs[:, 1][:, None]) & ~eye, float("-inf"))
            bwd = logits.t().masked_fill((pairs[:, 0][None] == pairs[:, 0][:, None]) & ~eye, float("-inf"))
            target = torch.arange(len(pairs))
            loss = (F.cross_entropy(fwd, target) + F.cross_entropy(bwd, target)) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        layer.eval()
        on_epoch(epoch, layer, float(np.mean(losses)))


def store(name: str) -> str:
    """The store a domain comes from: its name up to the first '_', '-' or digit (amazon14_beauty -> amazon)."""
    import re

    return re.split(r"[_\-\d]", name, maxsplit=1)[0]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prepared", default="outputs/scaling/prepared")
    parser.add_argument("--targets", default="amazon_scientific,amazon14_beauty")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--max-pairs", type=int, default=24000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--train-tokens", type=int, default=32)
    parser.add_argument("--max-users", type=int, default=2000)
    parser.add_argument("--same-store", action="store_true", help="train on the mix's domains from the targets' "
                        "store only (name prefix before the first '_' or digit: amazon), not every domain of the mix")
    parser.add_argument("--report", default="docs/benchmarks/encoder_tail.md")
    args = parser.parse_args(argv)
    import torch

    from bench.report import header
    from recgpt.data.mixes import load_plan
    from recgpt.predict.transfer import bootstrap_ratio
    from recgpt.tokenizer.embed import load_encoder

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    targets = args.targets.split(",")
    plan, mixes = load_plan(None, targets=targets)
    largest = {}
    for mix in mixes:
        for t in mix.serves:
            largest[t] = mix
    st = load_encoder("all-MiniLM-L6-v2", "cpu", "float32", "outputs/embed_cache")
    bert, tokenizer = st[0].auto_model.eval(), st[0].tokenizer
    lines = ["# Content kNN with MiniLM's last layer trained on next-item pairs (bench/encoder_tail.py)", "",
             header([__file__, *argv]), "NDCG@10, history excluded, every catalog centered on its own mean; the "
             "epoch is chosen on the fit domains (epoch 0 = plain MiniLM), never on the target.", "",
             "| target | protocol | users | epoch (chosen on) | content kNN | tail kNN | tail / content kNN [95%] | "
             "last epoch / content kNN [95%] |", "|---" * 8 + "|"]
    for mix in dict.fromkeys(largest[t] for t in targets):
        print(f"{mix.name}: {len(mix.datasets)} domains", flush=True)
        names = mix.datasets
        if args.same_store:
            stores = {store(t) for t in targets if t in mix.serves}
            names = tuple(n for n in mix.datasets if store(n) in stores)
            print(f"  same store as the targets: {', '.join(names)}", flush=True)
        sources = {n: load(args, n, bert, tokenizer) for n in names}
        fit_names = sorted({f for t in mix.serves if t in targets for f in plan.fit_domains[t]})
        fits = {f: load(args, f, bert, tokenizer) for f in fit_names}
        layer = copy.deepcopy(bert.encoder.layer[-1])
        states, scores = [], []

        def on_epoch(epoch, trained, loss):
            s = {f: knn(args, d, {"knn": centered(encode_all(trained, d["tokens"]))})["methods"]["knn"]["NDCG@10"]
                 for f, d in fits.items()}
            states.append(copy.deepcopy(trained.state_dict()))
            scores.append(s)
            print(f"  epoch {epoch}: loss {loss:.4f} fit-domain kNN NDCG@10 {s}", flush=True)

        train(args, layer, sources, fits, on_epoch)
        for t in [t for t in targets if t in mix.serves]:
            mean = [np.mean([s[f] for f in plan.fit_domains[t]]) for s in scores]
            best = max(range(len(mean)), key=lambda i: (mean[i], -i))
            dom = fits[t] if t in fits else load(args, t, bert, tokenizer)
            vectors = {}
            for key, state in (("content_knn", states[0]), ("tail_knn", states[best]), ("last", states[-1])):
                layer.load_state_dict(state)
                vectors[key] = centered(encode_all(layer.eval(), dom["tokens"]))
            for protocol in ("loo", "cold"):
                r = knn(args, dom, vectors, protocol)
                per = {m: r["per_user"][m]["NDCG"] for m in r["per_user"]}
                nd = {m: v["NDCG@10"] for m, v in r["methods"].items()}
                (a, lo, hi), (b, blo, bhi) = (bootstrap_ratio(per[k], per["content_knn"]) for k in ("tail_knn", "last"))
                lines.append(f"| {t} | {protocol} | {r['users']} | {best} ({', '.join(plan.fit_domains[t])}) | "
                             f"{nd['content_knn']:.4f} | {nd['tail_knn']:.4f} | {a:.3f} [{lo:.3f}, {hi:.3f}] | "
                             f"{b:.3f} [{blo:.3f}, {bhi:.3f}] |")
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
