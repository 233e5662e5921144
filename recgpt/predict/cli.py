"""`recgpt predict` / `python launch/predict.py`: [--config FILE] [--dataset NAME|DIR] [--cold | --horizon N]
[--strategy S] [predict.key=value ...]. The flags are shorthands for predict.* overrides."""
import sys

from recgpt.config import ConfigError, config_from_argv, load_config
from recgpt.config.predict import SCORINGS, STRATEGIES

DESCRIPTION = ("recommend for a downstream dataset and report metrics (the model beside content kNN, popularity and "
               f"recency); predict.scoring is one of {', '.join(SCORINGS)}")


def add_flags(parser) -> None:
    parser.add_argument("--dataset", help="a name under configs/datasets/ or a prepared dataset folder")
    parser.add_argument("--cold", action="store_true", help="RecGPT cold start: one random 2-4 item window per user")
    parser.add_argument("--horizon", type=int, help="hold out the last N items as the target set")
    parser.add_argument("--strategy", help=f"one of {', '.join(STRATEGIES)} (default exact)")


def flag_overrides(args) -> list[str]:
    if args.cold and args.horizon is not None:
        raise ConfigError("--cold and --horizon are different protocols: give one of them")
    out = []
    if args.dataset:
        out.append(f"predict.dataset={args.dataset}")
    if args.cold:
        out.append("predict.protocol=cold")
    if args.horizon is not None:
        out += ["predict.protocol=horizon", f"predict.horizon={args.horizon}"]
    if args.strategy:
        out.append(f"predict.strategy={args.strategy}")
    return out


VALUE_FLAGS = ("--config", "--dataset", "--horizon", "--strategy")


def overrides_last(argv) -> list[str]:
    """Flags first, key=value overrides after them, so the two may be given in any order."""
    flags, overrides, i = [], [], 0
    while i < len(argv):
        token = argv[i]
        if token in VALUE_FLAGS and i + 1 < len(argv):
            flags += [token, argv[i + 1]]
            i += 2
            continue
        (overrides if "=" in token and not token.startswith("-") else flags).append(token)
        i += 1
    return flags + overrides


def parse(argv):
    argv = overrides_last(list(argv))
    _, args = config_from_argv(argv, DESCRIPTION, add_flags)
    # Flags first, dotted overrides last: an explicit predict.key=value wins over its shorthand.
    return load_config(args.config, flag_overrides(args) + list(args.overrides))


def main(argv=None) -> int:
    """Errors propagate: `recgpt predict` and launch/predict.py print them as one line (recgpt.errors)."""
    from recgpt.predict.run import run_predict

    run_predict(parse(sys.argv[1:] if argv is None else argv))
    return 0
