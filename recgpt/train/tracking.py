"""Logging through accelerate trackers (jsonl always; TensorBoard and wandb on request), the throughput / MFU
/ ETA figures of each log line, and a PNG of the loss curves at the end of a run."""
import json
import time
from pathlib import Path
from typing import Optional

from accelerate.tracking import GeneralTracker, on_main_process

# Dense bf16 peak FLOP/s of one device (vendor figures, no sparsity), matched against the device name.
PEAK_FLOPS = {
    "H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
    "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 125e12, "T4": 65e12,
}


class JsonlTracker(GeneralTracker):
    """One JSON object per `accelerator.log` call: {"step": ..., **values}; config in config.json beside it."""
    name = "jsonl"
    requires_logging_directory = True

    # Built before the Accelerator exists, so __init__ must not ask which process it is: the file is opened
    # on the first write, which only the main process makes.
    def __init__(self, run_name: str, logging_dir):
        super().__init__()
        self.path = Path(logging_dir) / "metrics.jsonl"
        self._file = None

    @property
    def tracker(self):
        return self._file

    def _open(self):
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
        return self._file

    @on_main_process
    def store_init_configuration(self, values: dict):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.path.parent / "tracker_config.json").write_text(json.dumps(values, indent=2, default=str))

    @on_main_process
    def log(self, values: dict, step: Optional[int] = None, **kwargs):
        record = {"step": step, "time": round(time.time(), 3)}
        record.update({k: (v.item() if hasattr(v, "item") else v) for k, v in values.items()})
        self._open().write(json.dumps(record) + "\n")

    @on_main_process
    def finish(self):
        if self._file is not None:
            self._file.close()
            self._file = None


def make_trackers(names: list, run_dir: Path) -> list:
    """`log_with` for the Accelerator: jsonl is always on."""
    trackers: list = [JsonlTracker("recgpt", run_dir)]
    for name in names:
        if name == "tensorboard":
            trackers.append("tensorboard")
        elif name == "wandb":
            trackers.append("wandb")
    return trackers


def peak_flops(device, configured: float) -> Optional[float]:
    """Per-device peak FLOP/s for MFU: the configured value, else the table of known GPUs, else None (unknown:
    a CPU's peak depends on its cores, vector units and clocks, and a guessed figure would make MFU meaningless)."""
    if configured > 0:
        return configured
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        name = torch.cuda.get_device_name(device)
        for key, flops in PEAK_FLOPS.items():
            if key in name:
                return flops
    return None


class Throughput:
    """Tokens/s (all real input tokens and real target tokens), MFU and ETA over the steps since the last
    report. Only time spent in training steps counts: held-out evaluation and saving are left out."""

    def __init__(self, n_params: int, peak: Optional[float], world: int, max_steps: int):
        self.flops_per_token = 6 * n_params  # forward + backward of a dense model
        self.peak_total = peak * world if peak else None
        self.max_steps = max_steps
        self._seconds = self._targets = self._tokens = self._steps = 0
        self._all_seconds = self._all_steps = 0

    def add(self, target_tokens: int, tokens: int, seconds: float) -> None:
        self._targets += target_tokens
        self._tokens += tokens
        self._seconds += seconds
        self._steps += 1

    def report(self, step: int) -> dict:
        dt = max(self._seconds, 1e-9)
        tokens_s = self._tokens / dt
        self._all_seconds += self._seconds
        self._all_steps += self._steps
        out = {"tokens_per_s": tokens_s, "target_tokens_per_s": self._targets / dt,
               "eta_s": self._all_seconds / max(self._all_steps, 1) * (self.max_steps - step)}
        if self.peak_total:  # no key at all where the peak is unknown: trackers take numbers only
            out["mfu"] = self.flops_per_token * tokens_s / self.peak_total
        self._seconds = self._targets = self._tokens = self._steps = 0
        return out


def plot_loss_curves(metrics_path: Path, png_path: Path) -> Optional[Path]:
    """Train and held-out loss against step from metrics.jsonl; None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics_path = Path(metrics_path)
    if not metrics_path.is_file():
        return None
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    series = {"train": [(r["step"], r["loss"]) for r in rows if "loss" in r],
              "held-out": [(r["step"], r["heldout_loss"]) for r in rows if "heldout_loss" in r]}
    if not any(series.values()):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, points in series.items():
        if points:
            steps, losses = zip(*sorted(dict(points).items()))  # a resumed run may log a step twice
            ax.plot(steps, losses, label=label, marker="o" if label == "held-out" else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per code token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return Path(png_path)
