"""`recgpt rerank [--config FILE] rerank.sources=[a,b,...] rerank.fit_domains=[c] [rerank.key=value ...]`: train
the re-ranker on source domains and write it to rerank.out; `recgpt predict predict.reranker=<that folder>` uses it.
Fine-tuning on the catalog it will serve: `rerank.sources=[d] rerank.valid_users=1000 rerank.init_from=<re-ranker>`."""
import sys
import time
from pathlib import Path

from recgpt.config import config_from_argv, config_to_dict
from recgpt.config.errors import check
from recgpt.io import is_kind, staged_folder, write_manifest
from recgpt.logging import print0

DESCRIPTION = ("train the relational re-ranker (content kNN, popularity, the log's co-occurrence and the per-user "
               "rule, re-ordered by an MLP) on source domains, the step chosen on held-out ones")


def main(argv=None) -> int:
    from recgpt.predict.run import resolve_dataset
    from recgpt.predict.rerank import Reranker
    from recgpt.predict.rerank.train import Domain, Holdout, fit

    cfg, _ = config_from_argv(sys.argv[1:] if argv is None else argv, DESCRIPTION)
    r, start = cfg.rerank, time.time()
    r.check_ready()
    sources = {Path(d).name: resolve_dataset(d, cfg.data, "rerank.sources") for d in r.sources}
    fits = {Path(d).name: resolve_dataset(d, cfg.data, "rerank.fit_domains") for d in r.fit_domains}
    init = Reranker.load(r.init_from) if r.init_from else None
    if init is not None:
        check(init.meta.get("embed_model", cfg.embed.model) == cfg.embed.model, "rerank.init_from",
              f"{r.init_from} was trained on {init.meta.get('embed_model')} item embeddings, embed.model is "
              f"{cfg.embed.model}")
        if (init.hidden, init.rerank) != (r.hidden, r.rerank):
            print0(f"rerank: hidden {init.hidden} and rerank {init.rerank} are {r.init_from}'s (rerank.init_from)")
    with staged_folder(r.out, "re-ranker", "rerank.out", is_kind("rerank"), carry_over=False,
                       inputs=[*sources.values(), *fits.values(), *([r.init_from] if r.init_from else [])]) as tmp:
        print0(f"rerank: reading {len(sources)} source and {len(fits)} fit domains (item text embedded once, "
               f"cached in {cfg.embed.cache_dir or 'no cache'})")
        train = {name: Domain(path, cfg.embed, "loo", train=True) for name, path in sources.items()}
        held = {name: Domain(path, cfg.embed, "loo") for name, path in fits.items()}
        if r.valid_users:
            held.update({f"{name}, held-out users": Holdout(d, r.valid_users, r.seed) for name, d in train.items()})
        ranker, chosen = fit(train, held, r, print0, init)
        ranker.meta = {"sources": sorted(sources), "fit_domains": sorted(held), "embed_model": cfg.embed.model,
                       "init_from": r.init_from or None, **chosen}
        ranker.save(tmp)
        write_manifest(tmp, {"stage": "rerank", "sources": {n: str(p) for n, p in sources.items()},
                             "fit_domains": {n: str(p) for n, p in fits.items()}, "config": config_to_dict(cfg),
                             "seconds": round(time.time() - start, 1)})
    print0(f"rerank: step {chosen['step']} chosen on {', '.join(ranker.meta['fit_domains'])}; written to {r.out}")
    return 0
