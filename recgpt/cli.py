"""`recgpt <stage> ...`: one console script; each subcommand parses config and calls a package function.

Subcommands are registered in COMMANDS as "module:function" so that importing the CLI stays cheap and a
stage's heavy imports (torch, sentence-transformers) happen only when that stage runs.
"""
import importlib
import sys

COMMANDS = {
    "prepare": ("recgpt.data.cli:prepare_main", "import raw datasets into the prepared format"),
    "corpus": ("recgpt.data.cli:corpus_main", "merge prepared datasets into a pretraining corpus"),
    "tokenize": ("recgpt.tokenizer.cli:main", "embed item text (tokenize embed) and fit a tokenizer (tokenize fit)"),
    "pretrain": ("recgpt.train:main", "pretrain the item-code decoder (use accelerate launch for several GPUs)"),
    "eval": ("recgpt.evaluate:main", "score checkpoints by held-out loss and export the best"),
    "predict": ("recgpt.predict.cli:main", "recommend for a downstream dataset and report metrics"),
    "rerank": ("recgpt.predict.rerank.cli:main", "train the relational re-ranker on source domains (predict.reranker)"),
    "baseline": ("recgpt.baselines.cli:main", "train and evaluate an in-domain baseline (sasrec, bpr, gpt2, ...)"),
    "launch": ("recgpt.launcher:main", "accelerate launch (same options) whose failures are one line, not a traceback"),
}


def usage() -> str:
    lines = ["usage: recgpt <command> [--config FILE] [key=value ...] [--debug]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "A failed command prints one line; --debug (or RECGPT_DEBUG=1) shows the traceback."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"recgpt: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    from recgpt.errors import run_command

    module, func = COMMANDS[name][0].split(":")
    sys.argv[0] = f"recgpt {name}"  # argparse's usage line: `recgpt predict ...`, not `cli.py ...`
    return run_command(name, lambda args: getattr(importlib.import_module(module), func)(args), rest)


if __name__ == "__main__":
    sys.exit(main())
