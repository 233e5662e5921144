"""Pretraining mixes for the zero-shot scaling curve: held-out targets, near-duplicates and nested mixes.

Mixes are drawn from the text domains of ../shared/data (Plan.domains: every set with item text; taobao and
retailrocket have none). A target is reported zero-shot only from mixes that leave out `excluded(plan,
target)`: the target, its fit domains (the held-out *source* domains on which checkpoint and score weights
are chosen) and the near-duplicates of both.

Near-duplicates (RULE): the same catalogue of the same kind (two MovieLens sets, two Amazon Electronics sets,
two game stores), or at least NEAR_TITLE_SHARE of one domain's items titled as an item of the other
(`title_share`: lower-cased, years and punctuation removed, titles of 8+ characters). Measured on the shared
data (tests/test_data_parquet_sets.py checks that Plan.near holds every pair over the threshold): 87% of
ml-100k's titles are ml-1m titles, 22% / 15% between the two electronics sets, 5.0% of steam's titles are
amazon_games titles, 6.0% / 5.4% of the MovieLens titles are book titles (films of novels; neither is a
target); every other pair is under 1.2%, every other pair with a target at most 0.6%. Related but not near,
kept as sources: amazon14_beauty and amazon14_health (neighbouring Amazon categories, 0.0% shared titles),
listed in each manifest as `related_kept`. Users are not compared: a zero-shot model sees no user of the
target, whatever users other domains share with it.

Nested mixes: Plan.shared_order drawn at Plan.sizes (1, 3, 6, 9 domains) holds no target, fit domain or
near-duplicate of one, so each of those serves every target. The largest mix of a target is every domain
outside excluded(plan, target); targets with the same largest mix share it (one pretraining serves every
target it leaves out).
"""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

RULE = ("A mix reporting a target never holds the target, its fit domains (held-out source domains that choose the "
        "checkpoint and score weights) or a near-duplicate of either. Near-duplicates: the same catalogue of the "
        "same kind (two MovieLens sets, two Amazon Electronics sets, two game stores) or at least 2% of one "
        "domain's items titled as an item of the other.")
NEAR_TITLE_SHARE = 0.02


@dataclass
class Plan:
    """Targets, their fit domains, the domains mixes are drawn from and the near-duplicate pairs."""
    domains: tuple = ("ml-100k", "ml-1m", "amazon_games", "steam", "yelp", "lastfm", "amazon_scientific",
                      "amazon14_beauty", "amazon14_health", "amazon14_book", "amazon14_clothing",
                      "amazon14_electronic", "amazon18_electronic", "foodcom")
    # Each target's fit domains (the first selects the checkpoint, all fit the score weights): another target,
    # so that two targets share their largest mix (each is the other's fit domain).
    fit_domains: dict = field(default_factory=lambda: {
        "amazon_scientific": ["amazon14_beauty"], "amazon14_beauty": ["amazon_scientific"],
        "steam": ["yelp"], "yelp": ["steam"]})
    near: dict = field(default_factory=lambda: {
        "ml-100k|ml-1m": "both MovieLens (87% of ml-100k's titles are ml-1m titles)",
        "amazon14_electronic|amazon18_electronic": "both Amazon Electronics, 2014 and 2018 (22% / 15% shared titles)",
        "amazon_games|steam": "both video games (5.0% of steam's titles are amazon_games titles)",
        "ml-100k|amazon14_book": "films of novels (6.0% of ml-100k's titles are book titles)",
        "ml-1m|amazon14_book": "films of novels (5.4% of ml-1m's titles are book titles)"})
    related_kept: dict = field(default_factory=lambda: {
        "amazon14_beauty|amazon14_health": "neighbouring Amazon categories, 0.0% shared titles"})
    # The order in which domains enter the shared mixes, growing in size and in kinds: clothing; + recipes,
    # movies; + books, electronics, music; + a second MovieLens, a second electronics set, health products.
    shared_order: tuple = ("amazon14_clothing", "foodcom", "ml-1m", "amazon14_book", "amazon14_electronic",
                           "lastfm", "ml-100k", "amazon18_electronic", "amazon14_health")
    sizes: tuple = (1, 3, 6, 9)

    @property
    def targets(self) -> tuple:
        return tuple(self.fit_domains)

    @classmethod
    def from_json(cls, path) -> "Plan":
        """A plan from a json file with any of the fields above (e.g. other targets or a small test plan)."""
        data = json.loads(Path(path).read_text())
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown plan keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class Mix:
    name: str
    datasets: tuple
    serves: tuple  # the targets it may be reported on


def title_keys(titles) -> set:
    """The titles compared by the near-duplicate rule: lower-cased, "(1995)" and punctuation removed, 8+ chars."""
    keys = (re.sub(r"[^a-z0-9]+", " ", re.sub(r"\(\d{4}\)", "", str(t).lower())).strip() for t in titles)
    return {k for k in keys if len(k) >= 8}


def title_share(mine: set, theirs: set) -> float:
    """The share of one domain's title_keys that are also title_keys of another domain."""
    return len(mine & theirs) / max(len(mine), 1)


def pairs(table: dict, domain: str) -> dict:
    """{other domain: why} of the pairs "a|b" of `table` that hold `domain`."""
    out = {}
    for key, why in table.items():
        a, b = key.split("|")
        if domain in (a, b):
            out[b if domain == a else a] = why
    return out


def excluded(plan: Plan, target: str) -> dict:
    """{domain: why} that no mix reporting `target` may contain."""
    out = {target: "held-out target"}
    for fit in plan.fit_domains[target]:
        out[fit] = "fit domain of the target (checkpoint and score weights are chosen on it)"
    for base in (target, *plan.fit_domains[target]):
        for other, why in pairs(plan.near, base).items():
            out.setdefault(other, f"near-duplicate of {base}: {why}")
    return out


def plan_mixes(plan: Plan) -> list[Mix]:
    """The shared nested mixes, then the largest mix of each group of targets; every mix lists the targets it
    serves. Raises ValueError when a shared mix would not serve every target."""
    mixes = []
    for size in plan.sizes:
        datasets = tuple(plan.shared_order[:size])
        bad = {t: sorted(set(datasets) & set(excluded(plan, t))) for t in plan.targets}
        if len(datasets) < size or any(bad.values()):
            raise ValueError(f"shared mix of {size} domains: too few domains or it holds {bad}")
        mixes.append(Mix(f"mix{size:02d}", datasets, plan.targets))
    largest = {}
    for target in plan.targets:
        rest = tuple(d for d in plan.domains if d not in excluded(plan, target) and d not in plan.shared_order)
        largest.setdefault(rest, []).append(target)
    for rest, group in largest.items():
        if not rest:  # nothing beyond the shared mixes: the largest of those is the group's largest mix
            continue
        datasets = tuple(plan.shared_order) + rest  # the shared domains first: nested, in the same order
        mixes.append(Mix(f"mix{len(datasets):02d}-{'+'.join(group)}", datasets, tuple(group)))
    return sorted(mixes, key=lambda m: (len(m.datasets), m.name))


def load_plan(path=None, mixes=(), targets=()) -> tuple[Plan, list[Mix]]:
    """The plan of a json file (None: the shared-data plan) and its mixes; ValueError naming the file, or the
    names among `mixes` and `targets` that the plan does not have."""
    try:
        plan = Plan.from_json(path) if path else Plan()
        planned = plan_mixes(plan)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"--plan {path or '(default)'}: {e}") from e
    unknown = sorted(set(mixes) - {m.name for m in planned}) + sorted(set(targets) - set(plan.targets))
    if unknown:
        raise ValueError(f"unknown mix or target {unknown} in --plan {path or '(default)'}; mixes: "
                         f"{[m.name for m in planned]}, targets: {list(plan.targets)}")
    return plan, planned


def mix_manifest(plan: Plan, mix: Mix, interactions: dict) -> dict:
    """What a mix holds, what it leaves out and why, and its interactions ({dataset: prepared count})."""
    why_not = {}
    for target in mix.serves:
        for domain, why in excluded(plan, target).items():
            why_not.setdefault(domain, []).append(f"for {target}: {why}")
    out = {d: "; ".join(w) for d, w in why_not.items()}
    for domain in plan.domains:
        if domain not in mix.datasets and domain not in out:
            out[domain] = "not drawn at this mix size (the nested mixes add domains in a fixed order)"
    related = [f"{d} is related to target {t}, kept: {why}" for t in mix.serves
               for d, why in pairs(plan.related_kept, t).items() if d in mix.datasets]
    return {"name": mix.name, "datasets": list(mix.datasets), "serves": list(mix.serves),
            "fit_domains": {t: list(plan.fit_domains[t]) for t in mix.serves},
            "interactions": int(sum(interactions[d] for d in mix.datasets)),
            "interactions_per_dataset": {d: int(interactions[d]) for d in mix.datasets},
            "excluded": out, "related_kept": related, "rule": RULE}


def write_mix_manifest(folder, manifest: dict) -> Path:
    path = Path(folder) / "mix.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
