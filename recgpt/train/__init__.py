"""Pretraining: `recgpt pretrain` / `accelerate launch launch/pretrain.py --config ... key=value`."""
import sys


def main(argv=None) -> int:
    """Parse `[--config FILE] [key=value ...]`, pretrain, return an exit code (2: bad input, 1: diverged)."""
    from recgpt.config import ConfigError, config_from_argv
    from recgpt.io import ArtifactError

    try:
        cfg, _ = config_from_argv(sys.argv[1:] if argv is None else argv, description="pretrain the item-code decoder")
        from recgpt.train.trainer import TrainingDiverged, pretrain

        try:
            summary = pretrain(cfg)
        except TrainingDiverged as e:
            print(f"error: training diverged: {e}", file=sys.stderr, flush=True)
            return 1
    except (ConfigError, ArtifactError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    from recgpt.logging import print0

    print0(f"done: step {summary['step']}, loss {summary['loss']:.4f}, held-out {summary['heldout_loss']}, "
           f"checkpoints in {summary['run_dir']}")
    return 0


__all__ = ["main"]
