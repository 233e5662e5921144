"""The eight parquet sets of ../shared/data import with their specs (configs/datasets/) and match the counts of
../shared/data/README.md; the pretraining mixes of bench/scaling.py (recgpt.data.mixes) never hold a target
they serve, its fit domains or a near-duplicate of either, and they are nested."""
import json

import numpy as np
import pytest

from recgpt.config import load_dataset_spec
from recgpt.data import load_prepared
from recgpt.data.mixes import (NEAR_TITLE_SHARE, Plan, excluded, load_plan, mix_manifest, plan_mixes, title_keys,
                               title_share, write_mix_manifest)

# ../shared/data/README.md: users, items, interactions, ties (same user, same timestamp)
README = {
    "amazon14_beauty": (22_332, 12_086, 198_215, 77_242),
    "amazon14_book": (38_234, 38_519, 517_167, 114_849),
    "amazon14_clothing": (39_230, 22_948, 277_534, 99_270),
    "amazon14_electronic": (28_566, 15_743, 241_198, 77_772),
    "amazon14_health": (38_329, 18_427, 343_831, 111_655),
    "amazon18_electronic": (43_462, 23_133, 374_989, 143_933),
    "foodcom": (17_813, 41_240, 555_618, 137_942),
    "ml-1m": (6_040, 3_416, 999_611, 528_654),
}
DUPLICATE_ROWS = {"amazon18_electronic": 872}  # "872 repeated (user, item, timestamp) rows"; none elsewhere
# The near-duplicates the project's issue names; the plan may add more, never fewer.
ISSUE_NEAR = [("ml-1m", "ml-100k"), ("amazon14_electronic", "amazon18_electronic"), ("amazon_games", "steam")]


@pytest.fixture(scope="module")
def prepared(prepared_dir) -> dict:
    """Every text domain of the plan, prepared once (the session's folders, shared with other tests)."""
    return {name: load_prepared(prepared_dir(name)) for name in Plan().domains}


@pytest.mark.slow
def test_parquet_sets_match_the_readme(prepared):
    for name, (users, items, interactions, ties) in README.items():
        data = prepared[name]
        counts, inter = data.manifest["counts"], data.interactions
        assert (counts["users"], counts["items"], counts["interactions"]) == (users, items, interactions), name
        assert counts["duplicate_rows"] == DUPLICATE_ROWS.get(name, 0), name
        assert counts["raw_rows"] == interactions and counts["items_without_text"] == 0, name
        assert int(inter.duplicated(["user_id", "timestamp"]).sum()) == ties, name
        # a user's rows in time order (ties in file order), positions 0, 1, 2, ...
        same_user = (inter["user_id"].to_numpy()[1:] == inter["user_id"].to_numpy()[:-1])
        assert (np.diff(inter["timestamp"].to_numpy())[same_user] >= 0).all(), name
        assert (inter["position"].to_numpy() == inter.groupby("user_id", sort=False).cumcount().to_numpy()).all()
        assert (data.items["text"] == data.items["title"].str.slice(0, 512)).all(), name  # the title is the text


def test_parquet_specs_use_the_generic_table_format():
    for name in README:
        spec = load_dataset_spec(name)
        assert spec.format == "table" and spec.path == name and spec.text.fields == ["title"]
        assert spec.files == {"inter": f"{name}.inter.parquet", "item": f"{name}.item.parquet"}


@pytest.mark.slow
def test_near_duplicate_rule_holds_every_pair_over_the_title_threshold(prepared):
    """Every pair of text domains sharing >= NEAR_TITLE_SHARE of one's titles is a declared near-duplicate."""
    plan = Plan()
    titles = {n: title_keys(d.items[load_dataset_spec(n).text.fields[0]]) for n, d in prepared.items()}
    declared = {frozenset(key.split("|")) for key in plan.near}
    over = {frozenset((a, b)) for a in titles for b in titles
            if a != b and title_share(titles[a], titles[b]) >= NEAR_TITLE_SHARE}
    assert over, "no pair over the threshold: the measure is broken (ml-100k is inside ml-1m)"
    assert over <= declared, sorted(map(sorted, over - declared))
    assert {frozenset(p) for p in ISSUE_NEAR} <= declared


@pytest.mark.slow
def test_mix_manifests_leave_out_targets_and_near_duplicates_and_are_nested(prepared, tmp_path):
    plan = Plan()
    counts = {n: d.manifest["counts"]["interactions"] for n, d in prepared.items()}
    for mix in plan_mixes(plan):
        write_mix_manifest(tmp_path / mix.name, mix_manifest(plan, mix, counts))
    manifests = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/mix.json"))]
    assert {t for m in manifests for t in m["serves"]} == {"amazon_scientific", "amazon14_beauty", "steam", "yelp"}
    for m in manifests:
        held = set(m["datasets"])
        assert m["interactions"] == sum(counts[d] for d in held)
        assert set(m["excluded"]) == set(plan.domains) - held and all(m["excluded"].values())
        for target in m["serves"]:
            kept_out = {target, *m["fit_domains"][target]}
            assert not held & kept_out, (m["name"], target)
            for a, b in ISSUE_NEAR:
                assert not ({a, b} & kept_out and {a, b} & held), (m["name"], target, a, b)
    for target in plan.targets:
        chain = sorted((m for m in manifests if target in m["serves"]), key=lambda m: m["interactions"])
        sizes = [len(m["datasets"]) for m in chain]
        assert sizes[:4] == [1, 3, 6, 9] and sizes[-1] >= 11, (target, sizes)
        for small, large in zip(chain, chain[1:]):
            assert set(small["datasets"]) < set(large["datasets"]), (target, small["name"], large["name"])
            assert small["interactions"] < large["interactions"]
        assert set(chain[-1]["datasets"]) == set(plan.domains) - set(excluded(plan, target))  # all it may hold


def test_load_plan_names_the_mixes_and_targets_it_does_not_have(tmp_path):
    plan, mixes = load_plan(None, ["mix01"], ["steam"])
    assert "mix01" in {m.name for m in mixes} and "steam" in plan.targets
    with pytest.raises(ValueError, match=r"unknown mix or target \['mix99', 'ml-100k'\] in --plan \(default\)"):
        load_plan(None, ["mix01", "mix99"], ["steam", "ml-100k"])  # ml-100k is a domain, not a target
    (tmp_path / "plan.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"--plan .*plan\.json"):
        load_plan(tmp_path / "plan.json")
