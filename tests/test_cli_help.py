"""`recgpt <command> --help` runs for every command and lists the choices of its fixed sets (baselines,
protocols, strategies, scorings, tokenizer kinds, checkpoint selection), taken from the lists the config checks."""
import sys

import pytest

from recgpt.baselines import NAMES
from recgpt.cli import COMMANDS, main
from recgpt.config.baselines import PROTOCOLS
from recgpt.config.predict import SCORINGS, SELECT_BY, STRATEGIES
from recgpt.config.tokenizer import KINDS

SUBCOMMANDS = ([[name] for name in COMMANDS if name != "tokenize"]
               + [["tokenize", sub] for sub in ("embed", "fit", "assign")])


def help_text(argv, capsys, monkeypatch) -> str:
    monkeypatch.setattr(sys, "argv", ["recgpt"])  # the CLI names the subcommand in sys.argv[0]
    try:
        code = main([*argv, "--help"])
    except SystemExit as e:  # argparse's --help
        code = e.code
    out = capsys.readouterr()
    assert code in (0, None), out.err
    return " ".join((out.out + out.err).split())  # argparse wraps lines: compare on single spaces


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_help_runs_and_names_itself(argv, capsys, monkeypatch):
    text = help_text(argv, capsys, monkeypatch)
    assert text.startswith(f"usage: recgpt {' '.join(argv)} ")
    if argv == ["launch"]:  # accelerate launch's options; the stage script and its arguments follow them
        assert "--config_file" in text and "training_script" in text
    else:
        assert "--config" in text and "overrides" in text


def test_top_level_help_lists_every_command(capsys, monkeypatch):
    text = help_text([], capsys, monkeypatch)
    assert all(f" {name} " in text for name in COMMANDS)
    assert "embed|fit|assign" in help_text(["tokenize"], capsys, monkeypatch)


def test_baseline_help_lists_the_baselines_protocols_and_strategies(capsys, monkeypatch):
    text = help_text(["baseline"], capsys, monkeypatch)
    assert f"NAME one of {', '.join(NAMES)}" in text
    assert f"one of {', '.join(PROTOCOLS)}" in text and ", ".join(STRATEGIES) in text
    assert "sasrec" in NAMES and "mfgan" in NAMES and len(NAMES) >= 9  # the list is the registry, not a stub


def test_predict_help_lists_the_strategies_and_scorings(capsys, monkeypatch):
    text = help_text(["predict"], capsys, monkeypatch)
    assert f"--strategy STRATEGY one of {', '.join(STRATEGIES)}" in text
    assert ", ".join(SCORINGS) in text and "--cold" in text and "--horizon" in text


def test_fit_and_eval_help_list_their_choices(capsys, monkeypatch):
    assert ", ".join(KINDS) in help_text(["tokenize", "fit"], capsys, monkeypatch)
    assert ", ".join(SELECT_BY) in help_text(["eval"], capsys, monkeypatch)


def test_the_listed_choices_are_the_ones_the_config_accepts():
    from recgpt.config import ConfigError, load_config

    for strategy in STRATEGIES:
        assert load_config(None, [f"predict.strategy={strategy}", f"baseline.strategies=[{strategy}]"])
    for kind in KINDS:
        assert load_config(None, [f"tokenizer.kind={kind}"]).tokenizer.kind == kind
    for protocol in PROTOCOLS:
        assert load_config(None, [f"baseline.protocol={protocol}"]).baseline.protocol == protocol
    with pytest.raises(ConfigError, match="predict.strategy"):
        load_config(None, ["predict.strategy=nucleus"])
    assert load_config(None, []).predict.weights == "self" and load_config(None, ["predict.weights=fitted"])
    with pytest.raises(ConfigError, match=r"predict.weights: one of \('self', 'fitted'\)"):
        load_config(None, ["predict.weights=best"])
