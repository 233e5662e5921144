"""Bad inputs through the real commands (recgpt.cli.main in-process; launch/ scripts as subprocesses).

Each row of CASES is (case, setup, expected): `setup(ctx)` builds the bad input from real data (../shared/data
and the session's tiny run) and returns the command line; `expected` is either a regex that the one error
line must match (exit non-zero, no traceback) or Skip(counter, n): the command succeeds and the manifest counts
the skipped rows. Where a command is refused, the folder it would have written is checked byte-identical.
"""
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from fixtures_train import RUN_STEPS, SAVE_EVERY, TINY
from recgpt.cli import main

REPO = Path(__file__).resolve().parents[1]
INTER_ROWS = 400  # real ml-100k rows (header + these) are enough for every data case


@dataclass
class Skip:
    counter: str
    n: int


def snapshot(folder: Path) -> dict:
    """Every file and folder under `folder` with the sha256 of its bytes: 'byte-identical' means equal."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(Path(folder).rglob("*"))}


class Context:
    """What a case may need, built on demand (a data case never trains a model)."""

    def __init__(self, request, tmp_path: Path, monkeypatch):
        self.request, self.tmp, self.monkeypatch = request, tmp_path, monkeypatch
        self.guarded = None  # a folder that must come out byte-identical
        self.manifest = None  # where a Skip case finds its counts
        self.absent = []  # outputs a failed command must not leave behind

    def fixture(self, name):
        return self.request.getfixturevalue(name)

    # ---- raw data: a real subset with one defect, under a dataset spec named "bad"
    def raw_ml100k(self, edit=lambda lines: lines, spec_extra: str = "", spec_edit=lambda text: text) -> list:
        data = self.fixture("data_root")
        raw = self.tmp / "raw" / "bad"
        raw.mkdir(parents=True)
        lines = (data / "ml-100k" / "ml-100k.inter").read_text().splitlines(keepends=True)[:INTER_ROWS + 1]
        (raw / "ml-100k.inter").write_text("".join(edit(lines)), encoding="utf-8")
        shutil.copy(data / "ml-100k" / "ml-100k.item", raw / "ml-100k.item")
        spec = (REPO / "configs" / "datasets" / "ml-100k.yaml").read_text()
        self.write_spec(spec_edit(spec.replace("name: ml-100k", "name: bad").replace("path: ml-100k", "path: bad"))
                        + spec_extra)
        return self.data_args()

    def raw_retailrocket(self, edit=lambda lines: lines) -> list:
        """The first INTER_ROWS real RetailRocket events (a comma-separated table, read by the csv module)."""
        raw = self.tmp / "raw" / "bad"
        raw.mkdir(parents=True)
        lines = (self.fixture("data_root") / "retailrocket_mb" / "events.csv").read_text().splitlines(keepends=True)
        (raw / "events.csv").write_text("".join(edit(lines[:INTER_ROWS + 1])), encoding="utf-8")
        spec = (REPO / "configs" / "datasets" / "retailrocket_mb.yaml").read_text()
        spec = spec.replace("name: retailrocket_mb", "name: bad").replace("path: retailrocket_mb", "path: bad")
        self.write_spec(spec.replace("files: {events: events.csv, targets: test.csv}", "files: {events: events.csv}"))
        return self.data_args()

    def raw_lcrec(self, extra_users: dict) -> list:
        data = self.fixture("data_root") / "amazon_scientific"
        raw = self.tmp / "raw" / "bad"
        raw.mkdir(parents=True)
        users = json.loads((data / "Scientific.inter.json").read_text())
        subset = {u: users[u] for u in list(users)[:60]} | extra_users
        (raw / "Scientific.inter.json").write_text(json.dumps(subset))
        shutil.copy(data / "Scientific.item.json", raw / "Scientific.item.json")
        spec = (REPO / "configs" / "datasets" / "amazon_scientific.yaml").read_text()
        self.write_spec(spec.replace("name: amazon_scientific", "name: bad").replace("path: amazon_scientific", "path: bad"))
        return self.data_args()

    def write_spec(self, text: str) -> None:
        from recgpt.config import loader

        configs = self.tmp / "configs"
        (configs / "datasets").mkdir(parents=True, exist_ok=True)
        (configs / "datasets" / "bad.yaml").write_text(text)
        self.monkeypatch.setattr(loader, "CONFIGS_DIR", configs)

    def data_args(self) -> list:
        self.manifest = self.tmp / "prep" / "bad" / "manifest.json"
        return ["data.datasets=[bad]", f"data.raw_root={self.tmp / 'raw'}", f"data.prepared_root={self.tmp / 'prep'}",
                f"data.corpus_dir={self.tmp / 'corpus'}", "data.min_items=1"]

    def user_folder(self, name: str = "mine") -> Path:
        folder = self.tmp / name
        (folder / "notes").mkdir(parents=True)
        (folder / "thesis.txt").write_text("three years of work\n")
        (folder / "notes" / "a.md").write_text("# do not delete\n")
        self.guarded = folder
        return folder

    # ---- a copy of the session's tiny run (checkpoints at SAVE_EVERY and RUN_STEPS)
    def run(self, guard: bool = True) -> list:
        root = self.tmp / "ckpt"
        shutil.copytree(self.fixture("tiny_run"), root / "tiny")
        self.guarded = root / "tiny" if guard else None
        return ["pretrain", "--config", str(TINY), *self.fixture("tiny_train_cfg").overrides(root)]

    def step(self, step: int) -> Path:
        return self.tmp / "ckpt" / "tiny" / f"step-{step:08d}"

    def best(self) -> Path:
        best = self.tmp / "best"
        shutil.copytree(self.fixture("exported_model"), best)
        return best

    def predict_args(self, best: Path, *extra) -> list:
        return ["predict", "--dataset", str(self.fixture("prepared_dir")("ml-100k")), f"predict.model_dir={best}",
                f"predict.output_dir={self.tmp / 'out'}", *extra]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def list_yaml(ctx):
    (ctx.tmp / "list.yaml").write_text("- train\n- data\n")
    return ["corpus", "--config", str(ctx.tmp / "list.yaml")]


def timestamp_1e30(ctx):
    def edit(lines):
        fields = lines[5].rstrip("\n").split("\t")
        lines[5] = "\t".join(fields[:-1] + ["1e30"]) + "\n"
        return lines
    return ["prepare", *ctx.raw_ml100k(edit)]


def cut_last_row(ctx):
    def edit(lines):
        lines[-1] = lines[-1][: len(lines[-1]) // 2]  # "196\t24" of "196\t242\t3\t881250949\n"
        return lines
    return ["prepare", *ctx.raw_ml100k(edit)]


def empty_user_id(ctx):
    def edit(lines):
        lines[3] = "\t" + lines[3].split("\t", 1)[1]
        return lines
    return ["prepare", *ctx.raw_ml100k(edit)]


def bom_header(ctx):
    return ["prepare", *ctx.raw_ml100k(lambda lines: ["\ufeff" + lines[0], *lines[1:]])]


def lcrec_empty_list(ctx):
    return ["prepare", *ctx.raw_lcrec({"no_items": []})]


def spec_typo_over_stale_prepared(ctx):
    args = ctx.raw_ml100k()
    assert main(["prepare", *args]) == 0  # a good prepared folder exists, then the spec gets a typo
    ctx.write_spec((ctx.tmp / "configs" / "datasets" / "bad.yaml").read_text() + "imports: {duplicate: drop}\n")
    ctx.guarded = ctx.tmp / "prep"
    return ["corpus", *args]


def spec_typo_nothing_prepared(ctx):
    return ["corpus", *ctx.raw_ml100k(spec_extra="imports: {duplicate: drop}\n")]


def corpus_over_user_folder(ctx):
    return ["corpus", *ctx.raw_ml100k(), f"data.corpus_dir={ctx.user_folder()}"]


def corpus_over_raw_folder(ctx):
    args = ctx.raw_ml100k()
    ctx.guarded = ctx.tmp / "raw" / "bad"
    return ["corpus", *args, f"data.corpus_dir={ctx.guarded}"]


def empty_corpus(ctx):
    args = ctx.raw_ml100k()
    ctx.guarded, ctx.absent = ctx.tmp / "raw", [ctx.tmp / "corpus"]  # the dataset is prepared, then refused
    return ["corpus", *args, "data.min_items=1000"]  # every sequence is shorter


def overrides_after_flags(ctx):
    return ["tokenize", "embed", "--items", str(ctx.tmp / "none"), f"embed.cache_dir={ctx.tmp / 'cache'}"]


def embed_on_cuda(ctx):
    return ["tokenize", "embed", "--items", str(ctx.fixture("prepared_dir")("ml-100k")), "embed.device=cuda",
            f"embed.cache_dir={ctx.tmp / 'cache'}", f"embed.output_dir={ctx.tmp / 'emb'}"]


def fit_over_user_folder(ctx):
    return ["tokenize", "fit", f"tokenizer.output_dir={ctx.user_folder()}", f"tokenizer.embeddings_dir={ctx.tmp}"]


def resume_other_width(ctx):
    return [*ctx.run(), "model.d_model=96", f"train.max_steps={RUN_STEPS + 2}"]


def resume_other_tokenizer(ctx):
    from recgpt.tokenizer import load_item_codes, save_item_codes

    args = ctx.run()
    other = ctx.tmp / "other_tokenizer"
    shutil.copytree(ctx.fixture("tiny_tokenizer"), other)
    ids, codes = load_item_codes(other / "codes.safetensors")
    save_item_codes(other / "codes.safetensors", ids, codes[::-1].copy())  # same shape, other codes
    return [*args, f"tokenizer.output_dir={other}", f"train.max_steps={RUN_STEPS + 2}"]


def corrupt_newest_weights(ctx):
    args = ctx.run(guard=False)
    truncate(ctx.step(RUN_STEPS) / "model.safetensors")
    return [*args, f"train.max_steps={SAVE_EVERY + 1}"]


def truncated_optimizer(ctx):
    args = ctx.run(guard=False)
    truncate(ctx.step(RUN_STEPS) / "optimizer.bin")
    return [*args, f"train.max_steps={SAVE_EVERY + 1}"]


def every_checkpoint_corrupt(ctx):
    args = ctx.run()
    for step in (SAVE_EVERY, RUN_STEPS):
        truncate(ctx.step(step) / "model.safetensors")
    return [*args, f"train.max_steps={RUN_STEPS + 2}"]


def pretrain_empty_train_split(ctx):
    from datasets import load_from_disk

    corpus = ctx.tmp / "corpus"
    shutil.copytree(ctx.fixture("train_corpus"), corpus, ignore=shutil.ignore_patterns("sequences"))
    sequences = load_from_disk(str(ctx.fixture("train_corpus") / "sequences"))
    sequences["train"] = sequences["train"].select([])
    sequences.save_to_disk(str(corpus / "sequences"), num_shards={"train": 1, "heldout": 1})
    args = ctx.run(guard=False)
    return [*args, f"data.corpus_dir={corpus}", "run.name=fresh"]


def eval_over_user_best(ctx):
    args = ctx.run(guard=False)
    ctx.user_folder("ckpt/tiny/best")
    return ["eval", "--ckpt", str(ctx.tmp / "ckpt" / "tiny"), *args[3:]]


def predict_on_cuda(ctx):
    return ctx.predict_args(ctx.best(), "predict.device=cuda")


def predict_corrupt_weights(ctx):
    best = ctx.best()
    truncate(best / "model.safetensors")
    return ctx.predict_args(best)


def predict_missing_weights(ctx):
    best = ctx.best()
    (best / "model.safetensors").unlink()
    return ctx.predict_args(best)


def predict_tokenizer_without_source(ctx):
    best = ctx.best()
    (best / "source.json").unlink()
    return ctx.predict_args(best)


def predict_over_user_folder(ctx):
    return [*ctx.predict_args(ctx.best()), f"predict.output_dir={ctx.user_folder()}"]


def bad_byte_on_line_6(ctx):
    args = ctx.raw_ml100k()
    path = ctx.tmp / "raw" / "bad" / "ml-100k.inter"
    lines = path.read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b"\t", b"\t\xff", 1)  # a latin-1 byte in a utf-8 file, early in the first block
    path.write_bytes(b"\n".join(lines))
    return ["prepare", *args]


def unclosed_quote_on_line_30(ctx):
    def edit(lines):
        lines[29] = lines[29].replace(",view,", ',view,"', 1)
        return lines
    return ["prepare", *ctx.raw_retailrocket(edit)]


def symlink_loop(ctx):
    args = ctx.raw_ml100k()
    inter = ctx.tmp / "raw" / "bad" / "ml-100k.inter"
    inter.unlink()
    inter.symlink_to("loop")
    (inter.parent / "loop").symlink_to(inter.name)
    return ["prepare", *args]


def spec_files_as_list(ctx):
    return ["prepare", *ctx.raw_ml100k(spec_edit=lambda text: text.replace(
        "files: {inter: ml-100k.inter, item: ml-100k.item}", "files: [ml-100k.inter, ml-100k.item]"))]


def spec_name_not_file_name(ctx):
    return ["prepare", *ctx.raw_ml100k(spec_edit=lambda text: text.replace("name: bad", "name: ml-100k"))]


def seconds_and_milliseconds(ctx):
    def edit(lines):
        for i in (6, 10):  # file lines 7 and 11
            user, item, rating, stamp = lines[i].rstrip("\n").split("\t")
            lines[i] = "\t".join([user, item, rating, stamp + "000"]) + "\n"
        return lines
    return ["prepare", *ctx.raw_ml100k(edit)]


def fault_in_prepare(error):
    """`recgpt prepare` of good data on a machine that fails with `error` while writing parquet files."""
    def setup(ctx):
        import pyarrow.parquet as pq

        def fail(*args, **kwargs):
            raise error(ctx) if callable(error) else error
        args = ctx.raw_ml100k()
        ctx.monkeypatch.setattr(pq, "write_table", fail)
        ctx.guarded, ctx.absent = ctx.tmp / "raw", [ctx.tmp / "prep" / "bad"]  # inputs kept, no output left
        return ["prepare", *args]
    return setup


def cross_device(ctx):
    args = ctx.raw_ml100k()
    real = os.replace

    def replace(src, dst, *a, **kw):
        if Path(src).name.startswith(".bad.tmp-"):  # the staged folder moving into place across file systems
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src), None, str(dst))
        return real(src, dst, *a, **kw)
    ctx.monkeypatch.setattr(os, "replace", replace)
    ctx.guarded, ctx.absent = ctx.tmp / "raw", [ctx.tmp / "prep" / "bad"]
    return ["prepare", *args]


def pretrain_args(ctx, *extra):
    return ["pretrain", "--config", str(TINY), f"run.output_root={ctx.tmp / 'ckpt'}", *extra]


def predict_tampered_config(layers: int):
    def setup(ctx):
        best = ctx.best()
        config = json.loads((best / "config.json").read_text())
        (best / "config.json").write_text(json.dumps({**config, "model": {**config["model"], "n_layers": config["model"]["n_layers"] + layers}}))
        return ctx.predict_args(best)
    return setup


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="the case is a machine without CUDA")
CASES = [
    ("yaml_top_level_list", list_yaml, r"list\.yaml: the top level must be a mapping of keys"),
    ("timestamp_1e30", timestamp_1e30, r"ml-100k\.inter, line 6: timestamp '1e30' is out of range"),
    ("inter_cut_in_last_row", cut_last_row, Skip("cut_last_rows_dropped", 1)),
    ("empty_user_id", empty_user_id, Skip("rows_without_id_dropped", 1)),
    ("utf8_bom_header", bom_header, r"ml-100k\.inter, header 1: missing column.*byte-order mark \(BOM\)"),
    ("lcrec_empty_list", lcrec_empty_list, Skip("empty_users_skipped", 1)),
    ("spec_typo_over_stale_prepared", spec_typo_over_stale_prepared, r"bad\.yaml: imports\.duplicate: Key 'duplicate'"),
    ("spec_typo_nothing_prepared", spec_typo_nothing_prepared, r"bad\.yaml: imports\.duplicate: Key 'duplicate'"),
    ("corpus_over_user_folder", corpus_over_user_folder, r"mine \(data\.corpus_dir\) already holds files and is not a recgpt corpus"),
    ("corpus_over_raw_folder", corpus_over_raw_folder, r"bad \(data\.corpus_dir\) already holds files and is not a recgpt corpus"),
    ("empty_corpus", empty_corpus, r"no training sequence in bad .*an empty corpus was not written"),
    ("overrides_after_flags", overrides_after_flags, r"prepared dataset not found: .*none is not a folder"),
    pytest.param("embed_device_cuda", embed_on_cuda, r"embed\.device=cuda: no CUDA device is available", marks=NO_CUDA),
    ("fit_over_user_folder", fit_over_user_folder, r"mine \(tokenizer\.output_dir\) already holds files and is not a recgpt tokenizer"),
    ("resume_other_d_model", resume_other_width, r"step-00000024: the model config differs .*model\.d_model: 64 -> 96"),
    ("resume_other_tokenizer", resume_other_tokenizer, r"step-00000024: trained with tokenizer [0-9a-f]{12}, but the tokenizer"),
    ("corrupt_newest_model_safetensors", corrupt_newest_weights, "resumed:12:step-00000024/model.safetensors"),
    ("truncated_newest_optimizer_bin", truncated_optimizer, "resumed:12:step-00000024/optimizer.bin"),
    ("every_checkpoint_corrupt", every_checkpoint_corrupt, r"none of its complete checkpoints could be loaded \(step-00000024, step-00000012\)"),
    ("pretrain_empty_train_split", pretrain_empty_train_split, r"corpus.*has no training sequence"),
    ("eval_over_user_best", eval_over_user_best, r"best \(<run>/best\) already holds files and is not a recgpt exported model"),
    pytest.param("predict_device_cuda", predict_on_cuda, r"predict\.device=cuda: no CUDA device is available", marks=NO_CUDA),
    ("predict_corrupt_weights", predict_corrupt_weights, r"best/model\.safetensors .*cannot be loaded"),
    ("predict_missing_weights", predict_missing_weights, r"missing file: .*best/model\.safetensors"),
    ("predict_without_source_json", predict_tokenizer_without_source, r"best/source\.json is missing: the tokenizer"),
    ("predict_over_user_folder", predict_over_user_folder, r"mine \(predict\.output_dir\) already holds files and is not a recgpt prediction report"),
    # the real line, the key, the cause; nothing run that should not run
    ("bad_byte_on_line_6", bad_byte_on_line_6, r"ml-100k\.inter, line 6: not valid utf-8 text: .*b'\\xff'"),
    ("unclosed_quote_on_line_30", unclosed_quote_on_line_30, r"events\.csv, line 30: malformed CSV .*read to line 401; a quote left open"),
    ("symlink_loop", symlink_loop, r"bad/ml-100k\.inter: a symlink loop \(files\.inter\)"),
    ("spec_files_as_list", spec_files_as_list, r"bad\.yaml: files: expected a mapping \(key: value\), found a list"),
    ("spec_name_not_file_name", spec_name_not_file_name, r"bad\.yaml: name: 'ml-100k' differs from the file name 'bad'"),
    ("seconds_and_milliseconds", seconds_and_milliseconds, r"ml-100k\.inter, line 7: timestamp '\d+000': 2 of 400 timestamps .*milliseconds"),
    ("disk_full", fault_in_prepare(OSError(errno.ENOSPC, "No space left on device")),
     r"prep/bad: No space left on device \[ENOSPC\]; free space"),
    ("read_only", fault_in_prepare(lambda ctx: OSError(errno.EROFS, "Read-only file system", str(ctx.tmp / "prep"))),
     r"prep: Read-only file system \[EROFS\]"),
    ("cross_device", cross_device, r"prep/\.bad\.tmp-\d+ -> \S*prep/bad: Invalid cross-device link \[EXDEV\]"),
    ("run_name_dotdot", lambda ctx: pretrain_args(ctx, "run.name=.."), r"run\.name: a plain folder name .*got '\.\.'"),
    ("n_heads_zero", lambda ctx: pretrain_args(ctx, "model.n_heads=0"), r"model\.n_heads: must be >= 1, got 0"),
    ("predict_config_two_more_layers", predict_tampered_config(+2),
     r"best/model\.safetensors does not match \S*best/config\.json: \d+ missing keys \(blocks\.2\."),
    ("predict_config_one_layer_less", predict_tampered_config(-1),
     r"best/model\.safetensors does not match \S*best/config\.json: \d+ unexpected keys \(blocks\.1\."),
    ("predict_temperature_nan", lambda ctx: ctx.predict_args(ctx.best(), "predict.temperature=nan"),
     r"predict\.temperature: must be a finite number > 0, got nan"),
    ("predict_k_zero", lambda ctx: ctx.predict_args(ctx.best(), "predict.ks=[0,10]"), r"predict\.ks: must be >= 1"),
]


@pytest.mark.parametrize("case, setup, expected", CASES, ids=[getattr(c, "values", c)[0] for c in CASES])
def test_bad_input(case, setup, expected, request, tmp_path, monkeypatch, capsys):
    ctx = Context(request, tmp_path, monkeypatch)
    argv = setup(ctx)
    capsys.readouterr()
    if ctx.guarded is None and not isinstance(expected, Skip) and not expected.startswith("resumed:"):
        ctx.guarded = ctx.tmp  # a refusal changes nothing at all
    before = snapshot(ctx.guarded) if ctx.guarded else None
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if isinstance(expected, Skip):  # succeeds, and the skipped rows are counted and reported
        assert rc == 0, err
        assert json.loads(ctx.manifest.read_text())["counts"][expected.counter] == expected.n
        assert f"{expected.counter} {expected.n}" in out
    elif expected.startswith("resumed:"):  # falls back to the next older checkpoint, naming the bad file
        _, step, bad = expected.split(":")
        assert rc == 0, err
        assert re.search(rf"cannot resume from \S*{re.escape(bad)}: .*trying the next older checkpoint", err), err
        assert f"resumed from {ctx.step(int(step))}" in out
    else:  # refused: one line naming what is wrong
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
        assert rc == 2 and len(lines) >= 1, err  # 2: bad input or a fault of the machine; 1 is for bugs
        assert lines[-1].startswith(f"recgpt {argv[0]}") or lines[-1].startswith("error: "), lines[-1]
        assert re.search(expected, lines[-1]), lines[-1]
    if before is not None:
        assert snapshot(ctx.guarded) == before, "the command changed a folder it should have left alone"
    if not isinstance(expected, Skip) and not expected.startswith("resumed:"):
        assert not [p for p in ctx.tmp.rglob("*") if ".tmp-" in p.name], "a refused command left a temporary"
        assert not [p for p in ctx.absent if p.exists()], "a failed command left a half-written output"


def test_corpus_rebuild_keeps_what_other_stages_wrote(data_root, tmp_path, monkeypatch, request):
    ctx = Context(request, tmp_path, monkeypatch)
    args = ["corpus", *ctx.raw_ml100k()]
    assert main(args) == 0
    embeddings = tmp_path / "corpus" / "embeddings"
    embeddings.mkdir()
    (embeddings / "embeddings.safetensors").write_bytes(b"written by tokenize embed")
    before = snapshot(embeddings)
    first = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert main([*args, "data.heldout_users=0.5"]) == 0  # a different corpus, rebuilt in place
    assert snapshot(embeddings) == before
    second = json.loads((tmp_path / "corpus" / "manifest.json").read_text())
    assert second["config"]["heldout_users"] == 0.5 != first["config"]["heldout_users"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_refused_pretrain_leaves_no_trace_in_a_new_run_folder(tiny_train_cfg, tmp_path, capsys):
    """A run folder that did not exist is not created by a refused command either."""
    assert main(["pretrain", "--config", str(TINY), *tiny_train_cfg.overrides(tmp_path), "train.bogus=1"]) == 2
    assert not (tmp_path / "tiny").exists()


def test_generator_histories_and_string_catalogs(exported_model, ml100k_catalog, ml100k_histories):
    from recgpt.predict import Recommender

    recommender = Recommender.from_pretrained(exported_model)
    ids = ml100k_catalog.item_ids
    histories = [[ids[r] for r in h] for h in ml100k_histories[:3]]
    as_list = recommender.recommend(histories, k=5)
    as_generator = recommender.recommend((iter(h) for h in histories), k=5)
    assert as_generator.item_ids == as_list.item_ids and all(len(r) == 5 for r in as_generator.item_ids)
    with pytest.raises(TypeError, match="two lists"):
        recommender.set_catalog("abc", "xyz")


@pytest.mark.slow
def test_short_model_lists_are_noted(exported_model, prepared_dir, embed_config, tmp_path, capsys):
    """rra with horizon 2 and 2 samples yields at most 4 items per list: the report says so beside @20."""
    out = tmp_path / "out"
    assert main(["predict", "--dataset", str(prepared_dir("ml-100k")), f"predict.model_dir={exported_model}",
                 "--horizon", "2", "--strategy", "rra", "predict.n_samples=2", "predict.max_users=20",
                 f"predict.output_dir={out}", f"embed.cache_dir={embed_config.cache_dir}"]) == 0
    notes = json.loads((out / "metrics.json").read_text())["notes"]
    assert any(re.search(r"20 of 20 model lists hold fewer than 20 items \(shortest [1-4];", n) for n in notes), notes
    assert "fewer than 20 items" in (out / "metrics.md").read_text()


def test_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    from recgpt.config import ConfigError

    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="top level"):
        main(["corpus", "--config", str(tmp_path / "list.yaml"), "--debug"])
    monkeypatch.setenv("RECGPT_DEBUG", "1")
    with pytest.raises(ConfigError, match="top level"):
        main(["corpus", "--config", str(tmp_path / "list.yaml")])


@pytest.mark.parametrize("script, args, expected", [
    ("launch/pretrain.py", ["--config", "LIST"], r"LIST: the top level must be a mapping"),
    ("launch/eval.py", ["--ckpt", "MISSING"], r"checkpoint not found: MISSING is not a folder"),
    ("launch/predict.py", ["--dataset", "steam", "predict.device=cuda:0", "predict.model_dir=MISSING"],
     r"predict\.device=cuda:0: no CUDA device|no model at MISSING"),
    ("data_processing/prepare.py", ["--config", "LIST"], r"LIST: the top level must be a mapping"),
    ("data_processing/embed_items.py", ["--items", "MISSING", "embed.batch_size=8"], r"MISSING is not a folder"),
])
def test_launch_scripts_print_one_line(script, args, expected, tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n")
    names = {"LIST": str(tmp_path / "list.yaml"), "MISSING": str(tmp_path / "missing")}
    args = [names.get(a, a).replace("MISSING", names["MISSING"]) for a in args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert re.search(expected.replace("LIST", re.escape(names["LIST"])).replace("MISSING", re.escape(names["MISSING"])),
                     lines[0]), lines[0]
