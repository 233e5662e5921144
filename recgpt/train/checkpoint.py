"""Checkpoints: ckpt/<run>/step-NNNNNNNN/ written by `accelerator.save_state` on every rank (collective under
DeepSpeed), plus the model weights as one safetensors file and `meta.json`, written last by rank 0: a folder
without `meta.json` is incomplete (a crash mid-save) and is ignored. The newest complete one is resumed."""
import pickle
import re
import shutil
from pathlib import Path
from typing import Optional

from safetensors import SafetensorError

from recgpt.io import ArtifactError, load_safetensors, read_json, write_json
from recgpt.logging import warn

STEP_DIR = re.compile(r"^step-(\d{8})$")
META = "meta.json"
WEIGHTS = "model.safetensors"
EXPORT_WEIGHTS = "weights.safetensors"  # full fp32/bf16 state dict, whatever the DeepSpeed stage


class CheckpointMismatch(ArtifactError):
    """A checkpoint was made with another corpus or tokenizer than the one given now."""


def step_dir(run_dir, step: int) -> Path:
    return Path(run_dir) / f"step-{step:08d}"


def list_checkpoints(run_dir) -> tuple[list[Path], list[Path]]:
    """(complete, incomplete) step folders of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return [], []
    folders = sorted(p for p in run_dir.iterdir() if p.is_dir() and STEP_DIR.match(p.name))
    complete = [p for p in folders if (p / META).is_file()]
    return complete, [p for p in folders if not (p / META).is_file()]


def latest_checkpoint(run_dir, verbose: bool = True) -> Optional[Path]:
    complete, incomplete = list_checkpoints(run_dir)
    if verbose:
        for p in incomplete:
            warn(f"ignoring incomplete checkpoint {p} (no {META}: interrupted while saving)")
    return complete[-1] if complete else None


def read_meta(folder) -> dict:
    """meta.json of a complete checkpoint, with the keys every reader needs; ArtifactError otherwise."""
    meta = read_json(Path(folder) / META)
    missing = [k for k in ("step", "model_config") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ArtifactError(f"{Path(folder) / META}: missing {', '.join(missing)} (not written by recgpt pretrain?)")
    return meta


# Model keys that do not change the weights' shapes or meaning: a resume may change them.
RUNTIME_MODEL_KEYS = ("dropout", "attention")


def model_config_changes(meta: dict, model_now: dict) -> list[str]:
    """`model.<key>: <checkpoint> -> <now>` for every model key that differs from the checkpoint's config."""
    then = (meta.get("config") or {}).get("model") or {}
    return [f"model.{k}: {then.get(k)!r} -> {model_now.get(k)!r}" for k in sorted(set(then) | set(model_now))
            if k not in RUNTIME_MODEL_KEYS and then.get(k) != model_now.get(k)]


def check_resumable(meta: dict, folder, corpus_hash: str, tokenizer_hash: str, model_now: dict) -> None:
    """Refuse, before anything is written, to resume a checkpoint on other data or with another model shape."""
    check_compatible(meta, folder, corpus_hash, tokenizer_hash)
    changes = model_config_changes(meta, model_now)
    if changes:
        raise CheckpointMismatch(f"{folder}: the model config differs from the checkpoint's ({'; '.join(changes)}); "
                                 "resume with the checkpoint's values or start a new run (run.name)")


# What torch / accelerate / safetensors raise for a truncated or corrupt checkpoint file.
LOAD_ERRORS = (OSError, EOFError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError, SafetensorError)


def check_rng_state(folder, rank: int) -> None:
    """accelerate's load_state skips an unreadable RNG state silently (the run would then continue on other
    random numbers): read this rank's file first, so that a broken one counts as a broken checkpoint."""
    from accelerate.utils import load

    path = Path(folder) / f"random_states_{rank}.pkl"
    if path.is_file():
        load(str(path), weights_only=True)


def unreadable_file(folder) -> Optional[str]:
    """'<file>: <error>' for the first file of a checkpoint folder that cannot be read back, else None.
    Pickles (optimizer, scheduler, RNG states) are read with weights_only=True."""
    from accelerate.utils import load

    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            if path.suffix == ".safetensors":
                load_safetensors(path)
            elif path.suffix in (".bin", ".pkl", ".pt"):
                load(str(path), map_location="cpu", weights_only=True)
            elif path.suffix == ".json":
                read_json(path)
        except (ArtifactError, SafetensorError, *LOAD_ERRORS) as e:
            return f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None


def check_compatible(meta: dict, folder, corpus_hash: str, tokenizer_hash: str) -> None:
    """Refuse to continue or evaluate a checkpoint on data it was not trained for."""
    for key, now in (("tokenizer_hash", tokenizer_hash), ("corpus_hash", corpus_hash)):
        then = meta.get(key)
        if then is not None and now is not None and then != now:
            what = key.split("_")[0]
            raise CheckpointMismatch(f"{folder}: trained with {what} {then[:12]}, but the {what} given now is "
                                     f"{now[:12]}; use the {what} it was trained with or start a new run (run.name)")


def save_checkpoint(accelerator, model, run_dir, step: int, meta: dict, keep_last: int) -> Path:
    """Collective: every rank calls it. Returns the folder."""
    from safetensors.torch import save_file

    folder = step_dir(run_dir, step)
    if accelerator.is_main_process and folder.exists():
        shutil.rmtree(folder)  # a stale incomplete folder of the same step
    accelerator.wait_for_everyone()
    accelerator.save_state(str(folder), safe_serialization=True)
    state = accelerator.get_state_dict(model)  # gathers ZeRO-3 shards (zero3_save_16bit_model)
    if accelerator.is_main_process:
        from recgpt.train.objective import decoder_state_dict

        tensors = {k: v.detach().cpu().contiguous() for k, v in decoder_state_dict(state).items()}
        save_file(untie(tensors), str(folder / EXPORT_WEIGHTS), metadata={"step": str(step)})
        write_json(folder / META, {"step": step, **meta})  # last: marks the folder complete
        prune(run_dir, keep_last)
    accelerator.wait_for_everyone()
    return folder


def storage_key(tensor) -> tuple:
    """Equal for two names of one tied tensor (same storage, offset and shape)."""
    return tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape)


def untie(tensors: dict) -> dict:
    """safetensors refuses shared storage: clone tensors that alias an earlier one."""
    seen, out = set(), {}
    for k, v in tensors.items():
        ptr = storage_key(v)
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def prune(run_dir, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` complete checkpoints (incomplete ones older than those too)."""
    complete, incomplete = list_checkpoints(run_dir)
    doomed = complete[:-keep_last] if len(complete) > keep_last else []
    if complete:
        newest_kept = complete[-keep_last:][0]
        doomed += [p for p in incomplete if p.name < newest_kept.name]
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed
