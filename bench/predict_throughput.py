"""Prediction throughput: exact full-catalog scoring and the batched trie beam vs a RecGPT-faithful reference.

One model, one downstream catalog, the same leave-one-out users for all three:
  exact      model.score_items: one gather over the [N, L] code table per batch, then top-10
  trie beam  recgpt.predict.beam: batched, masks from the tensor trie, beam predict.beam_size
  reference  RecGPT's prediction-time search: the same batched forward, then per user a Python dict trie,
             10 codes kept at slot 0, the best 5 children of each beam, 20 beams kept (reference_beam_search)
The history forward pass is the same for all three, so it is timed once; the table gives users/s of the
search alone (from the same states) and end to end (forward + search), each as a ratio against the
reference, and Recall@10 of each.

    python bench/predict_throughput.py --config configs/sample.yaml --dataset steam [predict.max_users=1000]
"""
import sys
import time
from pathlib import Path

# The repo root instead of bench/ itself: a bench script named like a package must not shadow it.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402

from recgpt.config import config_from_argv  # noqa: E402
from recgpt.data import load_prepared  # noqa: E402
from recgpt.predict.beam import model_head, reference_beam_search, trie_beam_search  # noqa: E402
from recgpt.predict.metrics import ranking_metrics  # noqa: E402
from recgpt.predict.protocols import build_test_cases  # noqa: E402
from recgpt.predict.recommender import Recommender  # noqa: E402
from recgpt.predict.run import resolve_dataset  # noqa: E402
from recgpt.predict.ranking import top_k_items  # noqa: E402
from recgpt.predict.scoring import parallel_item_scores  # noqa: E402
from recgpt.predict.trie import python_trie  # noqa: E402


def states_of(rec, histories, size):
    """The model's history states, one batched forward per `size` users (shared by every method)."""
    return [rec.scorer.state(histories[i:i + size]) for i in range(0, len(histories), size)]


def search_exact(rec, states):
    sc, out = rec.scorer, []
    for state in states:
        if sc.parallel:
            scores = parallel_item_scores(sc.model, state, sc.flat_index)
        else:
            scores = sc.model.score_items(state, sc.item_codes)
        out += top_k_items(scores, 10)[0].tolist()
    return out


def search_trie_beam(rec, states, width):
    trie, out = rec.scorer.trie, []
    for state in states:
        leaves, _ = trie_beam_search(rec.scorer.model, state, trie, width)
        rows = trie.leaf_item[trie.leaf_ptr[leaves.clamp(min=0)]]  # first item of each leaf
        out += [[r for r, leaf in zip(rr, ll) if leaf >= 0][:10] for rr, ll in zip(rows.tolist(), leaves.tolist())]
    return out


def search_reference(rec, states, dict_trie):
    model, depth, out = rec.scorer.model, len(rec.catalog.slot_vocab_sizes), []
    parallel = model_head(model) == "parallel"
    for state in states:
        if parallel:  # RecGPT's head: every slot distribution comes from the one forward pass
            slots = [model.next_code_logprobs(state, torch.zeros(len(state), k, dtype=torch.long)).tolist()
                     for k in range(depth)]
        for b in range(len(state)):
            if parallel:
                step = lambda prefix, b=b: torch.tensor(slots[len(prefix)][b])  # noqa: E731
            else:
                step = lambda prefix, b=b: model.next_code_logprobs(  # noqa: E731
                    state[b:b + 1], torch.tensor([list(prefix)], dtype=torch.long).view(1, -1))[0]
            beams = reference_beam_search(step, dict_trie, depth, first=10, per_beam=5, keep=20)
            out.append([rows[0] for _, rows in beams][:10])
    return out


def timed(fn, *args):
    start = time.perf_counter()
    with torch.no_grad():
        result = fn(*args)
    return result, time.perf_counter() - start


def main(argv=None):
    def flags(parser):
        parser.add_argument("--dataset", help="a name under configs/datasets/ or a prepared folder")
        parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")

    cfg, args = config_from_argv(argv, "prediction throughput vs a RecGPT-faithful reference", flags)
    p = cfg.predict
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset_dir = resolve_dataset(args.dataset or p.dataset, cfg.data)
    rec = Recommender.from_pretrained(p.model_dir, embed_cfg=cfg.embed, device=p.device, batch_size=p.batch_size)
    rec.set_catalog_from_prepared(dataset_dir)
    cases = build_test_cases(load_prepared(dataset_dir).interactions, rec.catalog, "loo", seed=p.seed,
                             max_users=p.max_users or 1000)
    n = len(cases)
    dict_trie = python_trie(rec.catalog.codes)
    print(f"model {p.model_dir} (head {model_head(rec.model)}, {sum(x.numel() for x in rec.model.parameters()):,} "
          f"parameters); catalog {dataset_dir}: {rec.catalog.n_items} items, slots {rec.catalog.slot_vocab_sizes}; "
          f"{n} leave-one-out users; batch {p.batch_size}; torch threads {torch.get_num_threads()}")
    search_exact(rec, states_of(rec, cases.histories[:p.batch_size], p.batch_size))  # warm-up
    states, forward_s = timed(states_of, rec, cases.histories, p.batch_size)
    ref = "reference (RecGPT beam 10/5/20)"
    results = {"exact": timed(search_exact, rec, states),
               f"trie beam {p.beam_size}": timed(search_trie_beam, rec, states, p.beam_size),
               ref: timed(search_reference, rec, states, dict_trie)}
    print(f"history forward (shared by all): {n / forward_s:.1f} users/s")
    print(f"{'method':<34} {'search users/s':>15} {'x ref':>8} {'end-to-end users/s':>19} {'x ref':>8} "
          f"{'Recall@10':>10} {'same top-10 as exact':>21}")
    exact_recs = results["exact"][0]
    ref_search, ref_total = n / results[ref][1], n / (results[ref][1] + forward_s)
    for name, (recs, seconds) in results.items():
        recall = ranking_metrics(recs, cases.targets, [10])["Recall@10"]
        search, total = n / seconds, n / (seconds + forward_s)
        same = sum(set(a) == set(b) for a, b in zip(recs, exact_recs)) / n
        print(f"{name:<34} {search:>15.1f} {search / ref_search:>8.1f} {total:>19.1f} {total / ref_total:>8.1f} "
              f"{recall:>10.4f} {same:>21.1%}")


if __name__ == "__main__":
    main()
