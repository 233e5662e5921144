"""Checkpoints: ckpt/<run>/step-NNNNNNNN/ written by `accelerator.save_state` on every rank (collective under
DeepSpeed), plus the model weights as one safetensors file and `meta.json`, written last by rank 0: a folder
without `meta.json` is incomplete (a crash mid-save) and is ignored. The newest complete one is resumed."""
import re
import shutil
from pathlib import Path
from typing import Optional

from recgpt.io import ArtifactError, read_json, write_json
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
    return read_json(Path(folder) / META)


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
        save_file(_untie(tensors), str(folder / EXPORT_WEIGHTS), metadata={"step": str(step)})
        write_json(folder / META, {"step": step, **meta})  # last: marks the folder complete
        prune(run_dir, keep_last)
    accelerator.wait_for_everyone()
    return folder


def _untie(tensors: dict) -> dict:
    """safetensors refuses shared storage: clone tensors that alias an earlier one."""
    seen, out = set(), {}
    for k, v in tensors.items():
        ptr = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
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
