"""`recgpt baseline NAME --dataset D [--protocol loo|horizon|cold] [--config FILE] [baseline.key=value ...]`."""
import sys

from recgpt.baselines import NAMES
from recgpt.config import ConfigError, config_from_argv, load_config
from recgpt.config.baselines import PROTOCOLS
from recgpt.config.predict import STRATEGIES

DESCRIPTION = (f"train and evaluate an in-domain baseline: recgpt baseline NAME --dataset D, NAME one of "
               f"{', '.join(NAMES)}; baseline.strategies=[...] among {', '.join(STRATEGIES)}")


def add_flags(parser) -> None:
    parser.add_argument("--dataset", help="a name under configs/datasets/ or a prepared dataset folder")
    parser.add_argument("--protocol", help=f"one of {', '.join(PROTOCOLS)} (default loo)")


def parse(argv):
    from recgpt.predict.cli import overrides_last

    argv = list(argv)
    name = argv.pop(0) if argv and "=" not in argv[0] and not argv[0].startswith("-") else None
    argv = overrides_last(argv)
    _, args = config_from_argv(argv, DESCRIPTION, add_flags)
    flags = [f"baseline.name={name}"] if name else []
    flags += [f"baseline.dataset={args.dataset}"] if args.dataset else []
    flags += [f"baseline.protocol={args.protocol}"] if args.protocol else []
    return load_config(args.config, flags + list(args.overrides))


def main(argv=None) -> int:
    from recgpt.baselines import get_model
    from recgpt.baselines.run import run_baseline

    # Errors propagate: `recgpt baseline` prints them as one line (recgpt.errors.run_command).
    cfg = parse(sys.argv[1:] if argv is None else argv)
    get_model(cfg.baseline.name)  # an unknown name fails before any work
    if not cfg.baseline.dataset:
        raise ConfigError("baseline.dataset: give a dataset name or a prepared folder (--dataset)")
    run_baseline(cfg)
    return 0
