"""Rule baselines of multi-behaviour recommendation (GAMER) on both multi-behaviour datasets: next purchase
(leave the last purchase out), the shipped RetailRocket target set, and session-wise next purchase.

python bench/behavior_rules.py [--gap-minutes data.session_gap_minutes] [--raw-root ../shared/data] [--out outputs/bench/rules]

Prints one markdown table per dataset and protocol (HR and NDCG at 1/5/10/20) and writes rules.json.
History handling: items of the user's own history may be recommended (re-purchase is allowed).
"""
import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from recgpt.config import load_dataset_spec  # noqa: E402
from recgpt.config.data import DataConfig  # noqa: E402
from recgpt.data import load_prepared, prepare_dataset  # noqa: E402
from recgpt.data.sessions import last_session_split  # noqa: E402
from recgpt.predict.behavior_eval import (evaluate_rules, format_rules_table, next_behavior_cases,  # noqa: E402
                                          shipped_target_cases)
from recgpt.io import claim_until_exit  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gap-minutes", type=float, default=DataConfig().session_gap_minutes)
    p.add_argument("--raw-root", default="../shared/data")
    p.add_argument("--out", default="outputs/bench/rules")
    args = p.parse_args()
    claim_until_exit(args.out)  # a folder of this bench's (or a new one), one run at a time
    results = {}
    for name in ("taobao_userbehavior", "retailrocket_mb"):
        prepared = load_prepared(prepare_dataset(load_dataset_spec(name), args.raw_root, f"{args.out}/{name}"))
        inter = prepared.interactions
        protocols = {"next purchase (last buy held out)": next_behavior_cases(inter)[0],
                     f"session-wise next purchase (gap {args.gap_minutes:g} min)":
                         last_session_split(inter, args.gap_minutes)}
        if prepared.targets is not None:
            protocols["shipped targets (test.csv)"] = shipped_target_cases(inter, prepared.targets)[0]
        for protocol, cases in protocols.items():
            res = evaluate_rules(inter, prepared.items, cases)
            results[f"{name} / {protocol}"] = {"cases": len(cases), **res}
            print(f"\n### {name}: {protocol}, {len(cases)} users, catalog {len(prepared.items)} items\n")
            print(format_rules_table(res))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "rules.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
