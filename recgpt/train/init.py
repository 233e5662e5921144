"""Fine-tuning start point (`train.init_from`): the weights of an exported model (ckpt/<run>/best).

The exported model understands only the codes of the tokenizer it was trained with, so training must use
that same tokenizer (tokenizer.output_dir = <init_from>/tokenizer or an identical copy) with the target
catalog encoded by it (`recgpt tokenize assign`); any other tokenizer is refused before training starts.
"""
from pathlib import Path

from recgpt.config import ConfigError
from recgpt.io import sha256_file

TOKENIZER_FILES = ("config.json", "model.safetensors")


def tokenizer_files_hash(folder: Path) -> dict:
    return {name: sha256_file(Path(folder) / name) for name in TOKENIZER_FILES if (Path(folder) / name).is_file()}


def load_foundation(init_from: str, inputs):
    """The ItemCodeDecoder at `init_from`; a ConfigError when its tokenizer or text input differs from training's."""
    from recgpt.model.files import load_decoder, resolve_model_dir

    model_dir = resolve_model_dir(init_from)
    bundled = model_dir / "tokenizer"
    if not (bundled / "config.json").is_file():
        raise ConfigError(f"train.init_from: {model_dir} has no tokenizer/ folder: export it with `recgpt eval`")
    given = Path(inputs.tokenizer_dir) if inputs.tokenizer_dir else None
    if given is None or tokenizer_files_hash(bundled) != tokenizer_files_hash(given):
        raise ConfigError(f"train.init_from: the model at {model_dir} was trained with the tokenizer at {bundled}, "
                          f"which differs from tokenizer.output_dir={given}; encode the target catalog with the "
                          f"model's tokenizer (recgpt tokenize assign tokenizer.output_dir={bundled} --embeddings ...)")
    model = load_decoder(model_dir)  # strict: weights that do not match its config.json are refused
    if list(model.config.slot_vocab_sizes) != list(inputs.slot_vocab_sizes):
        raise ConfigError(f"train.init_from: the model at {model_dir} has slot vocab sizes "
                          f"{list(model.config.slot_vocab_sizes)}, the training codes {list(inputs.slot_vocab_sizes)}")
    if int(model.config.text_dim) != int(inputs.text_dim or 0):
        raise ConfigError(f"train.init_from: the model at {model_dir} takes text embeddings of width "
                          f"{model.config.text_dim}, training gives {inputs.text_dim or 0}")
    return model
