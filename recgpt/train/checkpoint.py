"""Checkpoints: ckpt/<run>/step-NNNNNNNN/ written by `accelerator.save_state` on every rank (collective under
DeepSpeed), plus the model weights as one safetensors file and `meta.json`, written last by rank 0: a folder
without `meta.json` is incomplete (a crash mid-save) and is ignored. The newest complete one is resumed.

Integrity: meta.json records the sha256 of every other file of the folder (`files`) and of its own content
(`meta_sha256`); resume refuses a folder whose bytes differ before anything is unpickled, and unpickles what
passes with weights_only=True only, DeepSpeed's own files included (weights_only_loads)."""
import json
import pickle
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from safetensors import SafetensorError

from recgpt.io import ArtifactError, load_safetensors, read_json, sha256_file, sha256_json, write_json
from recgpt.logging import warn

STEP_DIR = re.compile(r"^step-(\d{8})$")
META = "meta.json"
WEIGHTS = "model.safetensors"
EXPORT_WEIGHTS = "weights.safetensors"  # full fp32/bf16 state dict, whatever the DeepSpeed stage
TIED_KEY = "tied"  # its metadata: {name: first name} of the tensors stored once for several names


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


# meta.json keys and their types; the first two are required of every checkpoint, the rest when present.
META_TYPES = {"step": int, "model_config": dict, "tokens_seen": int, "target_tokens_seen": int, "config": dict,
              "data_position": dict, "world_size": int, "files": dict, "meta_sha256": str}


RESUME_KEYS = ("step", "model_config", "tokens_seen", "data_position")


def read_meta(folder, required=("step", "model_config")) -> dict:
    """meta.json of a complete checkpoint, with the `required` keys, every known key of the right type;
    ArtifactError (naming the key) otherwise."""
    path = Path(folder) / META
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: not a JSON object (not written by recgpt pretrain?)")
    missing = [k for k in required if k not in meta]
    if missing:
        raise ArtifactError(f"{path}: missing {', '.join(missing)} (not written by recgpt pretrain?)")
    for key, kind in META_TYPES.items():
        value = meta.get(key)
        if key in meta and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise ArtifactError(f"{path}: {key} is {type(value).__name__} {str(value)[:40]!r}, not {kind.__name__}")
    position = meta.get("data_position", {"epoch": 0, "index": 0})
    if sorted(position) != ["epoch", "index"] or not all(isinstance(v, int) for v in position.values()):
        raise ArtifactError(f"{path}: data_position must be {{epoch: int, index: int}}, not {position!r:.80}")
    return meta


# ---------------------------------------------------------------- integrity
def file_hashes(folder) -> dict:
    """{relative path: sha256} of every file of a checkpoint folder but meta.json."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != META}


def meta_digest(meta: dict) -> str:
    """sha256 of meta.json's content (without `meta_sha256`), as it reads back from the file."""
    return sha256_json(json.loads(json.dumps({k: v for k, v in meta.items() if k != "meta_sha256"}, default=str)))


def verify_files(folder, meta: dict) -> Optional[str]:
    """'<file>: <what is wrong>' for the first file of a checkpoint whose bytes are not those meta.json recorded
    (a changed, missing or added file, or an edited meta.json), else None. Reads bytes only: nothing is unpickled."""
    folder = Path(folder)
    if "files" not in meta:  # written before hashes were recorded: weights_only loading is the only guard
        warn(f"{folder / META} records no file hashes (an older checkpoint): its files are not verified")
        return None
    if meta.get("meta_sha256") != meta_digest(meta):
        return f"{folder / META}: its content differs from what was written (meta_sha256)"
    recorded, found = meta["files"], {p.relative_to(folder).as_posix() for p in folder.rglob("*")
                                       if p.is_file() and p.name != META}
    for name in sorted(found - set(recorded)):
        return f"{folder / name}: not a file of this checkpoint (not recorded in {META})"
    for name, digest in sorted(recorded.items()):
        path = folder / name
        if not path.is_file() or path.is_symlink():
            return f"{path}: missing (recorded in {META})"
        if sha256_file(path) != digest:
            return f"{path}: sha256 differs from the one recorded in {META} (changed after it was saved)"
    return None


def deepspeed_safe_globals() -> list:
    """The classes DeepSpeed's ZeRO checkpoint files pickle besides tensors and plain containers: allowed by
    name to weights_only unpickling (data classes and enums; nothing that runs code on load)."""
    found = []
    for module, names in (("deepspeed.runtime.fp16.loss_scaler", ("LossScaler", "DynamicLossScaler")),
                          ("deepspeed.utils.tensor_fragment", ("fragment_address",)),
                          ("deepspeed.runtime.zero.config", ("ZeroStageEnum",))):
        try:
            imported = __import__(module, fromlist=list(names))
        except ImportError:
            continue
        found += [getattr(imported, n) for n in names if hasattr(imported, n)]
    return found


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """Inside, every torch.load unpickles with weights_only=True, whatever its caller asked: DeepSpeed's
    checkpoint engine calls torch.load(..., weights_only=False), and this is how its files are read safely."""
    import torch

    real = torch.load

    def load(f, *args, **kwargs):
        kwargs["weights_only"] = True
        kwargs.pop("pickle_module", None)
        return real(f, *args, **kwargs)

    torch.load = load
    try:
        with torch.serialization.safe_globals(deepspeed_safe_globals()):
            yield
    finally:
        torch.load = real


# Model keys that do not change the weights' shapes or meaning: a resume may change them.
RUNTIME_MODEL_KEYS = ("dropout", "attention")


def model_config_changes(meta: dict, model_now: dict) -> list[str]:
    """`model.<key>: <checkpoint> -> <now>` for every model key that differs from the checkpoint's config."""
    from recgpt.config.recipes import canonical

    then = dict((meta.get("config") or {}).get("model") or {})
    if "recipe" in then:  # a recipe saved under its earlier name is the same recipe
        then["recipe"] = canonical(then["recipe"])
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


def load_state(accelerator, folder, rank: int) -> Optional[str]:
    """Load a checkpoint into the prepared objects: None, or '<file>: <error>' when it cannot be (its bytes
    differ from meta.json's record, or a file fails to load). Nothing is unpickled before the bytes are checked,
    and then only with weights_only=True (DeepSpeed's files included)."""
    try:
        error = verify_files(folder, read_meta(folder))
    except ArtifactError as e:
        return str(e)
    if error:
        return error
    try:
        with weights_only_loads():
            check_rng_state(folder, rank)
            accelerator.load_state(str(folder), load_kwargs={"weights_only": True})
    except LOAD_ERRORS as e:
        return unreadable_file(folder) or f"{folder}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def unreadable_file(folder) -> Optional[str]:
    """'<file>: <error>' for the first file of a checkpoint folder that cannot be read back, else None.
    Pickles (optimizer, scheduler, RNG states) are read with weights_only=True."""
    from accelerate.utils import load

    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            if path.suffix == ".safetensors":
                load_safetensors(path)
            elif path.suffix in (".bin", ".pkl", ".pt"):
                with weights_only_loads():
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


# What a step folder holds: accelerate's save_state files (DeepSpeed's included), our weights and meta.json, and
# the temporary safetensors writes through (`.tmp` + 6 characters, renamed into place; left by a kill mid-save).
CHECKPOINT_ENTRY = re.compile(r"((model|optimizer|scheduler|scaler|sampler|random_states|custom_checkpoint)(_\d+)?"
                              r"\.(safetensors|bin|pkl|pt)|weights\.safetensors|meta\.json(\.tmp)?|latest|"
                              r"zero_to_(fp32|torch)\.py|pytorch_model(_\d+)?|\.tmp[A-Za-z0-9]{6})")


def foreign_entries(folder) -> list[str]:
    """What a step folder holds that no checkpoint writes (a symlink, or a file of another name); [] for ours."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return [folder.name]
    out = []
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink() or not CHECKPOINT_ENTRY.fullmatch(entry.name):
            out.append(entry.name)
        elif entry.is_dir() and any(p.is_symlink() or p.is_dir() for p in entry.rglob("*")):
            out.append(entry.name)
    return out


def check_step_folders(run_dir) -> None:
    """Refuse (before anything is written) a run folder whose step-NNNNNNNN/ folders hold files no checkpoint
    writes: the run deletes stale and old step folders, and never a file it did not write."""
    for folder in sorted(Path(run_dir).glob("step-*")) if Path(run_dir).is_dir() else []:
        if STEP_DIR.match(folder.name) and foreign_entries(folder):
            raise ArtifactError(f"{folder} holds files no checkpoint writes ({', '.join(foreign_entries(folder)[:3])}):"
                                " refusing to train into this run folder; move them away or choose another run.name")


def save_checkpoint(accelerator, model, run_dir, step: int, meta: dict, keep_last: int) -> Path:
    """Collective: every rank calls it. Returns the folder."""
    from safetensors.torch import save_file

    folder = step_dir(run_dir, step)
    if accelerator.is_main_process and (folder.exists() or folder.is_symlink()):
        foreign = foreign_entries(folder)
        if foreign:
            raise ArtifactError(f"{folder} holds files no checkpoint writes ({', '.join(foreign[:3])}): not replaced")
        shutil.rmtree(folder)  # a stale step folder of this run (interrupted, or fallen back over on resume)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(folder), safe_serialization=True)
    state = accelerator.get_state_dict(model)  # gathers ZeRO-3 shards (zero3_save_16bit_model)
    if accelerator.is_main_process:
        from recgpt.train.objective import decoder_key, decoder_state_dict

        tensors = {k: v.detach().cpu().contiguous() for k, v in decoder_state_dict(state).items()}
        tied = {decoder_key(k): decoder_key(v) for k, v in tied_parameters(accelerator.unwrap_model(model)).items()}
        tied = {k: v for k, v in tied.items() if k in tensors and v in tensors}
        save_file({k: v for k, v in tensors.items() if k not in tied}, str(folder / EXPORT_WEIGHTS),
                  metadata={"step": str(step), TIED_KEY: json.dumps(tied)})
    accelerator.wait_for_everyone()  # every rank's files are on disk before they are hashed
    if accelerator.is_main_process:
        meta = {"step": step, **meta, "files": file_hashes(folder)}
        write_json(folder / META, {**meta, "meta_sha256": meta_digest(meta)})  # last: marks the folder complete
        prune(run_dir, keep_last)
    accelerator.wait_for_everyone()
    return folder


def tied_parameters(module) -> dict:
    """{name: first name} of each parameter that is another name of an earlier one (a code head's output tied to
    its code embedding). Read from the module, not from a state dict's storage: DeepSpeed's gathered copies of one
    tied matrix are separate tensors."""
    first, aliases = {}, {}
    for name, param in module.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases[name] = first[id(param)]
        else:
            first[id(param)] = name
    return aliases


def load_export_weights(folder) -> dict:
    """The state dict of a step folder's weights file, tied names restored from its metadata."""
    path = Path(folder) / EXPORT_WEIGHTS
    tensors, metadata = load_safetensors(path)
    try:
        tied = json.loads(metadata.get(TIED_KEY, "{}"))
        tensors.update({name: tensors[source] for name, source in tied.items()})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ArtifactError(f"{path}: metadata {TIED_KEY!r} does not name stored tensors: {e!r}") from None
    return tensors


def prune(run_dir, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` complete checkpoints (incomplete ones older than those too)."""
    complete, incomplete = list_checkpoints(run_dir)
    doomed = complete[:-keep_last] if len(complete) > keep_last else []
    if complete:
        newest_kept = complete[-keep_last:][0]
        doomed += [p for p in incomplete if p.name < newest_kept.name]
    doomed = [p for p in doomed if not foreign_entries(p)]  # never a file no checkpoint writes
    for p in doomed:
        shutil.rmtree(p, ignore_errors=True)
    return doomed
