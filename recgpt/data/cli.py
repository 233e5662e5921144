"""`recgpt prepare` and `recgpt corpus`: parse config, call the package function, print a summary."""
from pathlib import Path

from recgpt.config import config_from_argv, load_dataset_spec
from recgpt.data.corpus import build_corpus
from recgpt.data.prepare import prepare_dataset
from recgpt.io import read_manifest
from recgpt.logging import print0


# Rows or users an importer skipped (each counted in the manifest): shown in the summary when not zero.
SKIP_COUNTS = ("rows_without_id_dropped", "cut_last_rows_dropped", "item_cut_last_rows_dropped", "empty_users_skipped",
               "short_users_dropped", "items_without_text_dropped")


def prepare_main(argv) -> int:
    """Import every dataset of data.datasets from data.raw_root into data.prepared_root/<name>/."""
    cfg, _ = config_from_argv(argv, "import raw datasets into the prepared format (docs/artifacts.md)")
    for name in cfg.data.datasets:
        spec = load_dataset_spec(name)  # a name under configs/datasets/ or a spec's path: filed under spec.name
        out = prepare_dataset(spec, cfg.data.raw_root, Path(cfg.data.prepared_root) / spec.name)
        counts = read_manifest(out)["counts"]
        skips = ", ".join(f"{k} {v}" for k, v in counts.items() if v and k in SKIP_COUNTS)
        print0(f"{name}: {counts['users']} users, {counts['items']} items, {counts['interactions']} interactions "
               f"({counts['items_without_text']} items without text, {counts['duplicate_rows']} duplicate rows"
               f"{'; skipped: ' + skips if skips else ''}) -> {out}")
    return 0


def corpus_main(argv) -> int:
    """Merge data.datasets (prepared on demand) into data.corpus_dir."""
    cfg, _ = config_from_argv(argv, "merge prepared datasets into a pretraining corpus (docs/artifacts.md)")
    out = build_corpus(cfg.data)
    splits = read_manifest(out)["counts"]["splits"]
    print0(" ".join(f"{s}: {c['sequences']} sequences / {c['interactions']} items;" for s, c in splits.items()), out)
    return 0
