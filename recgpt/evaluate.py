"""Checkpoint selection: score one checkpoint or every complete one of a run by token-weighted held-out loss
(per eval dataset and overall, gathered over ranks) and, with eval.select_by=zero_shot, by zero-shot NDCG@10
on a held-out source domain; write selection.json, export the best as an HF folder with the tokenizer and
item codes it was trained with. With eval.score_fit, the hybrid score weights are then fitted on held-out
source domains and stored in the export (config.json; the fit in score_fit.json), so predict scores with them.

    python launch/eval.py --ckpt ckpt/<run>            (or: accelerate launch launch/eval.py --ckpt ...)

A checkpoint that is incomplete, corrupt or trained with another tokenizer is reported and skipped; scores
of a checkpoint whose meta and weights are unchanged are reused from an earlier selection.json.
"""
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import torch

from recgpt.io import ArtifactError, guarded_output, read_json, sha256_file, sha256_json, staged_folder, write_json
from recgpt.logging import print0, warn
from recgpt.model.files import save_model
from recgpt.train import checkpoint as ckpt

SELECTION = "selection.json"


def resolve_checkpoints(path) -> tuple[Path, list[Path], list[Path]]:
    """(run folder, step folders to score, incomplete step folders) for a step folder or a run folder."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"checkpoint not found: {path} is not a folder")
    if ckpt.STEP_DIR.match(path.name) or (path / ckpt.META).is_file():
        return path.parent, [path], []
    complete, incomplete = ckpt.list_checkpoints(path)
    if not complete and not incomplete:
        raise ArtifactError(f"{path}: neither a checkpoint (no {ckpt.META}) nor a run folder with step-NNNNNNNN/ folders")
    return path, complete, incomplete


def eval_config(path, config_file: Optional[str], overrides):
    """The run's saved config (so eval uses the corpus and tokenizer it was trained with) unless --config."""
    from recgpt.config import load_config

    run_dir = resolve_checkpoints(path)[0]
    saved = run_dir / "config.yaml"
    return load_config(config_file or (saved if saved.is_file() else None), overrides)


def load_eval_sources(cfg, inputs):
    """{name: SequenceSource} to score and a hash of that data (scores are reused only for the same data).

    heldout_users: the held-out split of the pretraining corpus. domains: every user of each corpus folder in
    eval.domains (built with `recgpt corpus`, items embedded and coded with the pretraining tokenizer by
    `recgpt tokenize embed` + `recgpt tokenize assign --embeddings <folder>/embeddings`); their code rows are
    appended after the pretraining items.
    """
    from recgpt.data import load_corpus
    from recgpt.tokenizer import load_item_codes
    from recgpt.train.inputs import SequenceSource, align_codes

    if cfg.eval.source == "heldout_users":
        if len(inputs.heldout) == 0:
            raise ArtifactError(f"{cfg.data.corpus_dir}: the held-out split is empty (data.heldout_users)")
        return {"heldout": inputs.heldout}, sha256_json({"source": "heldout_users", "corpus": inputs.corpus_hash})
    if not cfg.eval.domains:
        raise ArtifactError("eval.source=domains needs eval.domains: corpus folders of the eval domains")
    sources, hashes, tables, offset = {}, {}, [inputs.codes], len(inputs.codes)
    for folder in map(Path, cfg.eval.domains):
        codes_path = folder / "embeddings" / "codes.safetensors"
        if not folder.is_dir():
            raise ArtifactError(f"eval domain not found: {folder} (eval.domains)")
        if not codes_path.is_file():
            raise ArtifactError(f"item codes of eval domain {folder} not found: {codes_path}; run `recgpt tokenize "
                                f"embed` on it and `recgpt tokenize assign --embeddings {folder / 'embeddings'}`")
        corpus = load_corpus(folder)
        ids, codes = load_item_codes(codes_path)
        item_ids = corpus.items.sort_values("item_index")["item_id"].tolist()
        tables.append(align_codes(item_ids, ids, torch.as_tensor(codes), str(codes_path)).to(torch.int32))
        for split in corpus.sequences:  # every user of an eval domain is unseen in pretraining
            table = corpus.sequences[split].data.table
            groups = table.column("dataset").to_pylist() if "dataset" in table.column_names else None
            sources[f"{folder.name}/{split}"] = SequenceSource(
                [[i + offset for i in seq] for seq in table.column("items").to_pylist()], groups)
        offset += len(item_ids)
        hashes[str(folder)] = {"corpus": corpus.hash, "codes": sha256_file(codes_path)}
    inputs.codes = torch.cat(tables)
    return sources, sha256_json({"source": "domains", "domains": hashes})


def checkpoint_key(folder: Path) -> str:
    """Identity of a checkpoint's content: its meta and its weights file."""
    weights = folder / ckpt.EXPORT_WEIGHTS
    if not weights.is_file():
        raise ArtifactError(f"missing file: {weights}")
    return sha256_json({"meta": ckpt.read_meta(folder), "weights": sha256_file(weights)})


def load_checkpoint_model(folder: Path, meta: dict):
    from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig

    try:
        config = ItemCodeDecoderConfig(**{k: v for k, v in dict(meta["model_config"]).items()
                                          if k not in ("model_type", "transformers_version", "architectures")})
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{folder / ckpt.META}: model_config is not a valid model config: {e}") from None
    model = ItemCodeDecoder(config)
    tensors = ckpt.load_export_weights(folder)
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ArtifactError(f"{folder / ckpt.EXPORT_WEIGHTS}: weights do not fit the model of {ckpt.META}: "
                            f"{str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}") from None
    if missing or unexpected:
        raise ArtifactError(f"{folder / ckpt.EXPORT_WEIGHTS}: weights do not fit the model "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


def check_same_run(folder: Path, meta: dict, cfg) -> None:
    """A checkpoint copied in from another run (another width, depth, head...) is not this run's: scoring and
    exporting it as this run's best would pass another model off as this one."""
    from recgpt.config import config_to_dict

    then, now = (meta.get("config") or {}).get("model") or {}, config_to_dict(cfg.model)
    shared = set(then) & set(now)  # a key added to the config since is no sign of another run
    changes = ckpt.model_config_changes({"config": {"model": {k: then[k] for k in shared}}},
                                        {k: now[k] for k in shared})
    if changes:
        raise ckpt.CheckpointMismatch(f"{folder}: not a checkpoint of this run: its {ckpt.META} has another model "
                                      f"config than the run's ({'; '.join(changes)}); copied in from another run?")


def score_checkpoint(folder: Path, accelerator, inputs, sources: dict, cfg) -> dict:
    """Token-weighted loss per eval dataset and overall; raises ArtifactError for a bad checkpoint."""
    from recgpt.train.heldout import heldout_loss

    meta = ckpt.read_meta(folder)
    ckpt.check_compatible(meta, folder, None, inputs.tokenizer_hash)
    from recgpt.train.objective import NextItemObjective

    decoder = load_checkpoint_model(folder, meta).to(accelerator.device)
    model = NextItemObjective(decoder)
    row_items = cfg.train.row_items or decoder.config.max_items
    started, groups, totals = time.perf_counter(), {}, [0.0, 0, 0]
    for name, source in sources.items():
        result = heldout_loss(model, accelerator, source, inputs, cfg.train.batching, cfg.eval.batch_tokens,
                              row_items, by_group=True, progress=True)
        parts = result.pop("groups", {}) or {name: result}
        for group, r in parts.items():
            key = group if len(sources) == 1 or group == name else f"{name}:{group}"
            groups[key] = r
        totals[0] += result["loss"] * result["tokens"] if result["tokens"] else 0.0
        totals[1] += result["tokens"]
        totals[2] += result["sequences"]
    seconds = time.perf_counter() - started
    return {"step": meta["step"], "loss": totals[0] / totals[1] if totals[1] else float("nan"),
            "tokens": totals[1], "sequences": totals[2], "datasets": groups,
            "seconds": round(seconds, 3), "sequences_per_s": totals[2] / max(seconds, 1e-9)}


def export_best(folder: Path, out_dir: Path, inputs, meta: dict, cfg=None, fit_folders=()) -> tuple[Path, dict]:
    """HF folder (save_pretrained: safetensors + config.json) + tokenizer/ + codes.safetensors + item_ids.json;
    with `fit_folders` (prepared held-out source domains) the eval.score_fit weights are fitted on the staged
    export and stored in it (config.json, score_fit.json) before it replaces out_dir. Returns (out_dir, fit)."""
    model, fit = load_checkpoint_model(folder, meta), {}
    with staged_folder(out_dir, "exported model", "<run>/best", is_export, carry_over=False) as tmp:
        save_model(model, tmp)
        if inputs.tokenizer_dir is not None and Path(inputs.tokenizer_dir).is_dir():
            shutil.copytree(inputs.tokenizer_dir, tmp / "tokenizer")
        if inputs.codes_path is not None and Path(inputs.codes_path).is_file():
            shutil.copy2(inputs.codes_path, tmp / "codes.safetensors")
            ids = Path(inputs.codes_path).with_name("item_ids.json")
            if ids.is_file():
                shutil.copy2(ids, tmp / "item_ids.json")
        data = (meta.get("config") or {}).get("data") or {}
        write_json(tmp / "source.json", {"checkpoint": str(folder), "step": meta["step"],
                                         "tokenizer_hash": meta.get("tokenizer_hash"),
                                         "corpus_hash": meta.get("corpus_hash"),
                                         # predict notes when it is asked to score one of these (not zero-shot)
                                         "pretrained_on": data.get("datasets"), "train_split": data.get("train_split")})
        if fit_folders:
            from recgpt.predict.score_fit import fit_exported

            fit = fit_exported(tmp, cfg, fit_folders)
    return out_dir, fit


def is_export(folder: Path) -> bool:
    """An exported model folder: source.json names the checkpoint it came from."""
    return (folder / "source.json").is_file()


def select_checkpoints(cfg, path, inputs=None, export: bool = True) -> dict:
    """Score checkpoints at `path` (step folder or run folder), write selection.json, export the best."""
    with ExitStack() as held:  # <run>/best, held from the first check to the export
        return select_held(cfg, path, inputs, export, held)


def select_held(cfg, path, inputs, export: bool, held: ExitStack) -> dict:
    from recgpt.train.inputs import load_training_inputs
    from recgpt.train.trainer import make_accelerator

    run_dir, folders, incomplete = resolve_checkpoints(path)
    if export:  # before any work: never overwrite a best/ that eval did not write
        held.enter_context(guarded_output(run_dir / "best", "exported model", "<run>/best", is_export))
    fit_folders = []
    if cfg.eval.score_fit and export:
        from recgpt.predict.score_fit import fit_domain_folders

        fit_folders = fit_domain_folders(cfg)  # checked before any work too
    elif cfg.eval.score_fit:
        warn("eval.score_fit: nothing is fitted without an export (--no-export)")
    accelerator = make_accelerator(cfg)
    inputs = inputs if inputs is not None else load_training_inputs(cfg)
    sources, data_hash = load_eval_sources(cfg, inputs)
    probe = None
    if cfg.eval.select_by == "zero_shot":  # also scores every checkpoint zero-shot on a held-out source domain
        from recgpt.predict.transfer import TransferProbe

        probe = TransferProbe(cfg, inputs.tokenizer_dir)
        data_hash = sha256_json({"data": data_hash, "zero_shot": str(probe.folder), "users": len(probe.cases)})
    previous = {}
    if (run_dir / SELECTION).is_file():
        try:
            old = read_json(run_dir / SELECTION)
            if old.get("eval_data_hash") == data_hash:
                previous = old.get("checkpoints", {})
        except ArtifactError as e:
            warn(f"ignoring unreadable {run_dir / SELECTION}: {e}")
    results = {p.name: {"status": "skipped", "reason": "incomplete: no meta.json"} for p in incomplete}
    for folder in folders:
        try:
            key = checkpoint_key(folder)
            check_same_run(folder, ckpt.read_meta(folder), cfg)
            old = previous.get(folder.name, {})
            if old.get("status") == "ok" and old.get("key") == key:
                results[folder.name] = old
                print0(f"{folder.name}: loss {old['loss']:.4f} (unchanged, reused)")
                continue
            scored = score_checkpoint(folder, accelerator, inputs, sources, cfg)
            if probe is not None:
                scored["zero_shot_ndcg@10"] = probe.ndcg(load_checkpoint_model(folder, ckpt.read_meta(folder)))
                print0(f"{folder.name}: zero-shot NDCG@10 {scored['zero_shot_ndcg@10']:.4f} on {probe.folder.name}")
            results[folder.name] = {"status": "ok", "key": key, **scored}
            print0(f"{folder.name}: loss {scored['loss']:.4f} over {scored['tokens']} target tokens "
                   f"({scored['sequences_per_s']:.1f} sequences/s)")
        except ArtifactError as e:  # a broken, incomplete or foreign checkpoint; a bug in the code is not one
            results[folder.name] = {"status": "skipped", "reason": f"{type(e).__name__}: {e}"}
            if accelerator.is_main_process:
                warn(f"skipping {folder}: {e}")
    scored = {name: r for name, r in results.items() if r["status"] == "ok"}
    if probe is not None:  # the best transfer wins; ties go to the lower loss
        best = min(scored, key=lambda n: (-scored[n]["zero_shot_ndcg@10"], scored[n]["loss"])) if scored else None
    else:
        best = min(scored, key=lambda name: scored[name]["loss"]) if scored else None
    selection = {"run_dir": str(run_dir), "eval_source": cfg.eval.source, "select_by": cfg.eval.select_by,
                 "eval_data_hash": data_hash,
                 "tokenizer_hash": inputs.tokenizer_hash, "best": best,
                 "best_loss": scored[best]["loss"] if best else None, "checkpoints": dict(sorted(results.items()))}
    if accelerator.is_main_process:
        if best and export:
            out, fit = export_best(run_dir / best, run_dir / "best", inputs, ckpt.read_meta(run_dir / best),
                                   cfg, fit_folders)
            selection["exported"] = str(out)
            print0(f"best: {best} (loss {selection['best_loss']:.4f}) exported to {out}")
            if fit:
                from recgpt.predict.score_fit import SCORE_FIT, fit_summary

                selection["score_weights"] = fit["weights"]
                print0(f"{fit_summary(fit)}; stored in {out / 'config.json'} ({out / SCORE_FIT})")
        write_json(run_dir / SELECTION, selection)
    accelerator.wait_for_everyone()
    return selection


def main(argv=None) -> int:
    from recgpt.config import ConfigError, config_from_argv
    from recgpt.config.predict import SELECT_BY

    def flags(parser):
        parser.add_argument("--ckpt", required=True, help="a step-NNNNNNNN folder or a run folder (every complete checkpoint)")
        parser.add_argument("--no-export", action="store_true", help="score only; do not write <run>/best/")

    try:
        _, args = config_from_argv(sys.argv[1:] if argv is None else argv, "score checkpoints, export the best; "
                                   f"eval.select_by is one of {', '.join(SELECT_BY)}", flags)
        cfg = eval_config(args.ckpt, args.config, args.overrides)
        selection = select_checkpoints(cfg, args.ckpt, export=not args.no_export)
    except (ConfigError, ArtifactError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    if not selection["best"]:  # every checkpoint was skipped (each named above): bad input, not a bug
        print(f"error: no checkpoint at {args.ckpt} could be scored (see the warnings above)", file=sys.stderr,
              flush=True)
        return 2
    return 0
