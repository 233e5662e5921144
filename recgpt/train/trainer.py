"""Pretraining loop: build -> train -> train_step -> evaluate -> save.

Accelerate owns devices, mixed precision, gradient accumulation and DeepSpeed. Each optimizer step's loss is
token-weighted over all its micro-batches and ranks: every rank knows the epoch plan, so the step's global
target-token count is known before the first backward and each micro-batch contributes loss_sum / count.
"""
import importlib
import math
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import torch

from recgpt.config import ConfigError, config_to_dict, save_config
from recgpt.io import ArtifactError, guarded_output, writing
from recgpt.logging import is_main_process, print0, warn
from recgpt.train import checkpoint as ckpt
from recgpt.train.heldout import heldout_loss, loss_sums
from recgpt.train.objective import NextItemObjective
from recgpt.train.inputs import MicroBatchStream, TrainingInputs, load_training_inputs
from recgpt.train.optim import build_optimizer, build_scheduler
from recgpt.train.tracking import Throughput, make_trackers, peak_flops, plot_loss_curves


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


def use_cuda() -> bool:
    return torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true", "yes")


def make_accelerator(cfg, log_with=None, project_dir=None):
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    handlers = []
    if not use_cuda() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        handlers.append(InitProcessGroupKwargs(backend="gloo"))  # CPU processes talk over gloo
        try:  # gloo does not need DeepSpeed's shared-memory op, which otherwise JIT-builds for ~50 s
            importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
        except ImportError:
            pass
    env_accum = os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    if env_accum and int(env_accum) != cfg.train.grad_accum:  # accelerate would let the launcher's value win
        raise ConfigError(f"accelerate launch sets gradient_accumulation_steps={env_accum} but train.grad_accum="
                          f"{cfg.train.grad_accum}: drop it from the launch command / accelerate config")
    # mixed_precision given here wins over `accelerate launch --mixed_precision`: the recgpt config decides.
    accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision, gradient_accumulation_steps=cfg.train.grad_accum,
                              log_with=log_with, project_dir=project_dir, kwargs_handlers=handlers,
                              step_scheduler_with_optimizer=False)  # we step the schedule once per optimizer step
    accelerator.register_save_state_pre_hook(drop_tied_aliases)
    return accelerator


def drop_tied_aliases(models, weights, output_dir) -> None:
    """save_state hook: a tied matrix (a code head's output = its code embedding) is saved once, under its first
    name, as accelerate would after warning that it "removed shared tensors"; load_state restores the tie."""
    from recgpt.train.checkpoint import tied_parameters

    for model, state in zip(models, weights):
        for name in tied_parameters(model):
            state.pop(name, None)


def reconcile_deepspeed(accelerator, train_cfg, micro_batch_rows: int, d_model: int) -> None:
    """The recgpt config is the single source of batch size, accumulation, clipping and lr: a DeepSpeed config
    may leave them "auto" or repeat the same value; anything else is an error naming both values."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    for section in ("optimizer", "scheduler"):
        if section in ds:
            raise ConfigError(f"DeepSpeed config has an {section!r} section: remove it; recgpt builds AdamW and "
                              "its warmup + cosine schedule from train.lr / train.warmup_steps")
    want = {"train_micro_batch_size_per_gpu": micro_batch_rows, "gradient_accumulation_steps": train_cfg.grad_accum,
            "gradient_clipping": train_cfg.grad_clip,
            "train_batch_size": micro_batch_rows * train_cfg.grad_accum * accelerator.num_processes}
    source = {"gradient_accumulation_steps": "train.grad_accum", "gradient_clipping": "train.grad_clip",
              "train_micro_batch_size_per_gpu": "train.tokens_per_batch / (row_items x codes per item)",
              "train_batch_size": "micro batch x train.grad_accum x processes"}
    for key, value in want.items():
        have = ds.get(key, "auto")
        if have != "auto" and float(have) != float(value):
            raise ConfigError(f"DeepSpeed config sets {key}={have} but the recgpt config gives {value} "
                              f"({source[key]}); set it to \"auto\" in the DeepSpeed JSON")
        ds[key] = value
    # Sizes accelerate derives from config.hidden_size (our model calls it d_model); same formulas.
    zero = ds.setdefault("zero_optimization", {})
    for key, value in (("reduce_bucket_size", d_model * d_model),
                       ("stage3_prefetch_bucket_size", int(0.9 * d_model * d_model)),
                       ("stage3_param_persistence_threshold", 10 * d_model)):
        if zero.get(key) == "auto":
            zero[key] = value
    accelerator.gradient_accumulation_steps = train_cfg.grad_accum


class Trainer:
    def __init__(self, cfg, inputs: Optional[TrainingInputs] = None):
        self.cfg, self.inputs = cfg, inputs
        self.run_dir = Path(cfg.run_dir)
        self.step, self.tokens_seen, self.target_tokens_seen = 0, 0, 0
        self.last_loss, self.last_heldout = math.nan, None

    # ---------------------------------------------------------------- build
    def build(self) -> "Trainer":
        cfg, tcfg = self.cfg, self.cfg.train
        if self.inputs is None:  # first, so that a missing corpus or tokenizer fails before anything starts
            self.inputs = load_training_inputs(cfg)
        inputs = self.inputs
        # Every check that can refuse the run comes before anything is written to the run folder.
        self.hold_run_folder()
        try:
            self.build_held(cfg, tcfg, inputs)
        except BaseException:
            self.release()
            raise
        return self

    def hold_run_folder(self) -> None:
        """One writer per run folder: the main process holds its lock (a second `recgpt pretrain` on it stops
        naming this pid) until train() ends; a folder recgpt did not write, or with step folders holding other
        files, is refused."""
        self._held = ExitStack()
        if is_main_process():
            self._held.enter_context(guarded_output(self.run_dir, "run folder", "run.name", is_run_folder))
            ckpt.check_step_folders(self.run_dir)

    def release(self) -> None:
        held = getattr(self, "_held", None)
        if held is not None:
            held.close()

    def build_held(self, cfg, tcfg, inputs) -> None:
        from accelerate.utils import set_seed
        from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig

        candidates = self.resume_candidates() if tcfg.resume else []
        self.accelerator = acc = make_accelerator(cfg, make_trackers(tcfg.trackers, self.run_dir), self.run_dir)
        set_seed(tcfg.seed)
        if tcfg.init_from:  # fine-tuning: the exported model's own architecture and weights (or fresh ones)
            from recgpt.train.init import load_foundation

            decoder = load_foundation(tcfg.init_from, inputs)
            self.model_config = decoder.config
            if tcfg.init_weights == "random":  # seeded as a run without init_from would be
                set_seed(tcfg.seed)
                decoder = ItemCodeDecoder(self.model_config)
        else:
            self.model_config = ItemCodeDecoderConfig.from_recgpt(cfg.model, inputs.slot_vocab_sizes,
                                                                  inputs.text_dim or 0, inputs.slot_levels)
            decoder = ItemCodeDecoder(self.model_config)
        max_items = self.model_config.max_items
        self.row_items = tcfg.row_items or max_items
        if self.row_items > max_items:
            raise ConfigError(f"train.row_items={self.row_items} exceeds the model's max_items={max_items}")
        rows = max(1, tcfg.tokens_per_batch // (self.row_items * inputs.n_slots)) if tcfg.batching == "pack" else 1
        reconcile_deepspeed(acc, tcfg, rows, self.model_config.d_model)
        model = NextItemObjective(decoder)
        self.n_params = sum(p.numel() for p in model.parameters())
        mc = self.model_config
        parts = [p for p, on in (("codes " + (mc.codes.head if mc.codes else ""), mc.codes is not None),
                                 ("dense", mc.dense is not None), ("text input", mc.text_dim > 0)) if on]
        print0(f"model: {self.n_params:,} parameters (recipe {mc.recipe}: {mc.n_layers} layers x {mc.d_model}, "
               f"{', '.join(parts)}; attention {mc.attention})")
        optimizer = build_optimizer(model, tcfg)
        scheduler = build_scheduler(optimizer, tcfg)
        self.model, self.optimizer, self.scheduler = acc.prepare(model, optimizer, scheduler)
        self.is_deepspeed = acc.state.deepspeed_plugin is not None
        self.stream = MicroBatchStream(inputs.train, inputs, tcfg.batching, self.row_items, tcfg.tokens_per_batch,
                                       tcfg.seed, acc.process_index, acc.num_processes)
        self.stream.plan(0)  # fails early when the corpus cannot feed every rank
        if candidates:
            self.resume(candidates)
        if acc.is_main_process:
            save_config(cfg, self.run_dir / "config.yaml")
        wandb = {"dir": str(self.run_dir), "mode": os.environ.get("WANDB_MODE", "offline")}  # offline unless asked
        acc.init_trackers(cfg.run.name, config=_flat(config_to_dict(cfg)), init_kwargs={"wandb": wandb})

    def resume_candidates(self) -> list:
        """(folder, meta) of the run's complete checkpoints, newest first, each checked against the data and
        model config given now (a mismatch is refused, never skipped); an unreadable meta.json is warned about."""
        complete = ckpt.list_checkpoints(self.run_dir)[0]
        ckpt.latest_checkpoint(self.run_dir, verbose=is_main_process())  # warns about incomplete folders
        model_now = config_to_dict(self.cfg)["model"]
        out = []
        for folder in reversed(complete):
            try:
                meta = ckpt.read_meta(folder, required=ckpt.RESUME_KEYS)
            except ArtifactError as e:
                warn(f"cannot resume from {folder}: {e}; trying the next older checkpoint")
                continue
            ckpt.check_resumable(meta, folder, self.inputs.corpus_hash, self.inputs.tokenizer_hash, model_now)
            out.append((folder, meta))
        if complete and not out:
            raise ArtifactError(f"{self.run_dir}: none of its {len(complete)} complete checkpoints has a readable "
                                f"{ckpt.META}; move them away to start afresh, or choose another run.name")
        return out

    def resume(self, candidates: list) -> Path:
        """Load the newest loadable checkpoint; a corrupt one is named and the next older one tried."""
        acc = self.accelerator
        for folder, meta in candidates:
            error = ckpt.load_state(acc, folder, acc.process_index)  # bytes checked first, then weights_only loads
            failed = acc.reduce(torch.tensor([float(error is not None)], device=acc.device), reduction="sum")
            if float(failed) == 0:
                break
            warn(f"cannot resume from {error or f'{folder}: it failed to load on another process'}; "
                 "trying the next older checkpoint")
        else:
            raise ArtifactError(f"{self.run_dir}: none of its complete checkpoints could be loaded "
                                f"({', '.join(f.name for f, _ in candidates)}); see the warnings above")
        self.step, self.tokens_seen = int(meta["step"]), int(meta["tokens_seen"])
        self.target_tokens_seen = int(meta.get("target_tokens_seen", 0))
        self.last_loss, self.last_heldout = meta.get("loss", math.nan), meta.get("heldout_loss")
        position = dict(meta["data_position"])
        old_world, world = int(meta.get("world_size", self.accelerator.num_processes)), self.accelerator.num_processes
        if old_world != world:  # keep the global position in the epoch's plan: rounds of `world` micro-batches
            position["index"] = position["index"] * old_world // world
            print0(f"warning: resuming a {old_world}-process run on {world} processes; data continues at "
                   f"micro-batch {position['index'] * world} of epoch {position['epoch']}")
        self.stream.load_state(position)
        print0(f"resumed from {folder} (step {self.step}, epoch {self.stream.epoch}, batch {self.stream.index})")
        return folder

    # ---------------------------------------------------------------- train
    def train(self) -> dict:
        acc, tcfg = self.accelerator, self.cfg.train
        from tqdm.auto import tqdm

        peak = peak_flops(acc.device, tcfg.peak_flops)
        meter = Throughput(self.n_params, peak, acc.num_processes, tcfg.max_steps)
        bar = tqdm(total=tcfg.max_steps, initial=self.step, desc="pretrain", disable=not acc.is_main_process)
        self.model.train()
        window = torch.zeros(2, dtype=torch.float64)
        try:
            if tcfg.save_initial and self.step == 0 and ckpt.latest_checkpoint(self.run_dir, verbose=False) is None:
                self.save()
            while self.step < tcfg.max_steps:
                started = time.perf_counter()
                loss, sums, tokens, targets = self.train_step()
                window += sums
                meter.add(targets, tokens, time.perf_counter() - started)
                bar.update(1)
                if self.step % tcfg.log_every == 0 or self.step == tcfg.max_steps:
                    values = {"loss": float(window[0] / window[1]), "lr": self.scheduler.get_last_lr()[0],
                              "epoch": self.stream.epoch, "tokens_seen": self.tokens_seen, **meter.report(self.step)}
                    window.zero_()
                    acc.log(values, step=self.step)
                    bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}",
                                    tok_s=f"{values['tokens_per_s']:.0f}", mfu=_mfu(values))
                    if acc.is_main_process:
                        bar.write(_log_line(self.step, tcfg.max_steps, values))
                if self.step % tcfg.eval_every == 0 or self.step == tcfg.max_steps:
                    self.evaluate()
                if self.step % tcfg.save_every == 0 or self.step == tcfg.max_steps:
                    self.save()
        finally:
            bar.close()
            acc.end_training()
            if acc.is_main_process:
                plot_loss_curves(self.run_dir / "metrics.jsonl", self.run_dir / "loss_curves.png")
            self.release()
        return {"step": self.step, "loss": self.last_loss, "heldout_loss": self.last_heldout,
                "tokens_seen": self.tokens_seen, "run_dir": str(self.run_dir)}

    def train_step(self):
        """One optimizer step over grad_accum micro-batches; returns (loss, [sum, count], tokens, targets)."""
        acc, tcfg = self.accelerator, self.cfg.train
        micro = [self.stream.next() for _ in range(tcfg.grad_accum)]
        step_targets = sum(g for _, g in micro)
        # Accelerate / DeepSpeed divide by grad_accum and DDP averages over ranks: undo both, so that the
        # gradient is that of (sum of token losses over the step) / (target tokens of the step).
        scale = acc.num_processes * tcfg.grad_accum / max(step_targets, 1)
        local = torch.zeros(3, dtype=torch.float64, device=acc.device)  # loss sum, target tokens, input tokens
        for batch, _ in micro:
            with acc.accumulate(self.model):
                loss_sum, n_tokens = self.compute_loss(batch)
                acc.backward(loss_sum * scale)
                if acc.sync_gradients and tcfg.grad_clip > 0 and not self.is_deepspeed:
                    acc.clip_grad_norm_(self.model.parameters(), tcfg.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            tokens = float((batch["segment"] > 0).sum()) * self.inputs.n_slots
            local += torch.stack([loss_sum.detach().double(), n_tokens.detach().double(),
                                  torch.tensor(tokens, dtype=torch.float64, device=acc.device)])
        self.scheduler.step()
        self.step += 1
        sums = acc.reduce(local, reduction="sum").cpu()  # one collective per step; also makes NaN unanimous
        global_tokens = int(sums[2])
        self.tokens_seen += global_tokens
        self.target_tokens_seen += int(sums[1])
        loss = float(sums[0] / sums[1]) if sums[1] > 0 else math.nan
        if not math.isfinite(loss):
            good = ckpt.latest_checkpoint(self.run_dir, verbose=False)
            raise TrainingDiverged(f"loss is {loss} at step {self.step} (lr {self.scheduler.get_last_lr()[0]:.3g}); "
                                   f"stopped without saving. Last good checkpoint: {good or 'none'}. "
                                   "Try a lower train.lr, more train.warmup_steps or train.grad_clip.")
        self.last_loss = loss
        return loss, sums[:2], global_tokens, int(sums[1])

    def compute_loss(self, batch: dict):
        """(loss_sum, n_target_tokens) of one micro-batch; a seam for tests that inject failures."""
        return loss_sums(self.model, batch, self.accelerator.device)

    # ---------------------------------------------------------------- evaluate / save
    def evaluate(self) -> Optional[float]:
        if len(self.inputs.heldout) == 0:
            return None
        tcfg = self.cfg.train
        result = heldout_loss(self.model, self.accelerator, self.inputs.heldout, self.inputs, tcfg.batching,
                              tcfg.tokens_per_batch, self.row_items, max_batches=tcfg.eval_max_batches)
        self.last_heldout = result["loss"]
        self.accelerator.log({"heldout_loss": result["loss"], "heldout_tokens": result["tokens"]}, step=self.step)
        print0(f"step {self.step}: held-out loss {result['loss']:.4f} over {result['tokens']} target tokens")
        return result["loss"]

    def save(self) -> Path:
        meta = {"tokens_seen": self.tokens_seen, "target_tokens_seen": self.target_tokens_seen,
                "loss": self.last_loss, "heldout_loss": self.last_heldout, "data_position": self.stream.state(),
                "world_size": self.accelerator.num_processes, "corpus_hash": self.inputs.corpus_hash,
                "tokenizer_hash": self.inputs.tokenizer_hash,
                "tokenizer_dir": str(self.inputs.tokenizer_dir) if self.inputs.tokenizer_dir else None,
                "codes_path": str(self.inputs.codes_path) if self.inputs.codes_path else None,
                "model_config": self.model_config.to_dict(), "config": config_to_dict(self.cfg)}
        with writing(self.run_dir):  # a full disk names the run folder
            return ckpt.save_checkpoint(self.accelerator, self.model, self.run_dir, self.step, meta,
                                        self.cfg.train.keep_last)


def is_run_folder(folder: Path) -> bool:
    """A run folder recgpt pretrain wrote: its metrics, tracker config or checkpoints, or its config.yaml."""
    if any((folder / name).is_file() for name in ("metrics.jsonl", "tracker_config.json")):
        return True
    if any(ckpt.STEP_DIR.match(p.name) and not ckpt.foreign_entries(p) for p in folder.iterdir()):
        return True
    import yaml

    try:
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        return isinstance(saved, dict) and {"run", "train", "model"} <= set(saved)
    except (OSError, ValueError, yaml.YAMLError):
        return False


def _flat(tree: dict, prefix: str = "") -> dict:
    """TensorBoard hparams take scalars only."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def _mfu(values: dict) -> str:
    return f"{values['mfu']:.2%}" if "mfu" in values else "n/a"


def _log_line(step: int, max_steps: int, v: dict) -> str:
    eta = int(v["eta_s"])
    return (f"step {step}/{max_steps} loss {v['loss']:.4f} lr {v['lr']:.3e} tokens/s {v['tokens_per_s']:.0f} "
            f"(targets {v['target_tokens_per_s']:.0f}) mfu {_mfu(v)} eta {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}")


def pretrain(cfg, inputs: Optional[TrainingInputs] = None) -> dict:
    """Build a trainer from the config (and optionally ready inputs), train to train.max_steps, return a summary."""
    return Trainer(cfg, inputs).build().train()
