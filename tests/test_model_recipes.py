"""Model recipes (recgpt.config.recipes): every shipped config loads and builds only the parts it uses, a recipe is
overridden key by key, nonsense combinations are refused naming the key, and an export of the earlier flat format
is refused with the way to convert it, which then loads exactly."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from recgpt.config import ConfigError, load_config
from recgpt.config.recipes import RECIPES
from recgpt.model import ItemCodeDecoder, ItemCodeDecoderConfig

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_builds_only_what_it_uses(path):
    cfg = load_config(path)
    levels = [[8, 8, 8, 6, 5]] * 3 + [[]]
    config = ItemCodeDecoderConfig.from_recgpt(cfg.model, [15360] * 3 + [64], 384, levels)
    with torch.device("meta"):
        model = ItemCodeDecoder(config)
    names = {n for n, _ in model.named_parameters()}
    assert (model.head is None) == (cfg.model.codes is None)
    assert (model.dense_head is None) == (cfg.model.dense is None)
    if cfg.model.dense is not None:
        assert any(n.startswith("dense_head.query.") for n in names) == (cfg.model.dense.query != "content")
        assert any(n.startswith("dense_head.tower.") for n in names) == cfg.model.dense.item_tower
    assert (model.text_projection is None) == (not cfg.model.text_input)


def test_recipes_are_overridden_key_by_key():
    cfg = load_config(None, ["model.recipe=code", "model.d_model=256", "model.n_heads=4"])
    assert cfg.model.recipe == "code" and cfg.model.dense is None and cfg.model.codes.head == "parallel"
    assert cfg.model.d_model == 256 and not cfg.model.text_input
    cfg = load_config(None, ["model.dense.pool=3"])  # the default recipe: text_dense
    assert cfg.model.recipe == "text_dense" and cfg.model.dense.pool == 3 and cfg.model.dense.popularity == "gated"
    cfg = load_config(None, ["model.recipe=code", "model.dense.query=state", "model.dense.pool=1", "model.dense.negatives=in_batch",
                             "model.dense.popularity=none"])  # a part added to a recipe that has none
    assert cfg.model.codes is not None and cfg.model.dense.query == "state"
    assert load_config(None, ["model.recipe=tiger"]).model.codes.head == "autoregressive"
    assert set(RECIPES) == {"text_dense", "text_state", "code", "code_text", "hybrid", "tiger"}
    state = load_config(None, ["model.recipe=text_state"]).model  # text_dense but for the query and the tower
    dense = load_config(None, ["model.recipe=text_dense", "model.dense.query=content_state",
                               "model.dense.item_tower=true"]).model
    assert state.dense == dense.dense and state.recipe == "text_state"


def test_the_earlier_recipe_name_reads_as_the_same_recipe(tmp_path):
    """zero_shot, the recipe's earlier name, in a config or in an exported model's config.json."""
    old = load_config(None, ["model.recipe=zero_shot", "model.dense.pool=3"])
    assert old.model == load_config(None, ["model.recipe=text_dense", "model.dense.pool=3"]).model
    model = ItemCodeDecoder(ItemCodeDecoderConfig.from_recipe("zero_shot", [8, 8], embed_dim=6, n_layers=1,
                                                              d_model=16, n_heads=2, d_ff=32))
    assert model.config.recipe == "text_dense"
    model.save_pretrained(str(tmp_path / "m"))
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    saved["model"]["recipe"] = "zero_shot"  # as exported before the rename
    (tmp_path / "m" / "config.json").write_text(json.dumps(saved))
    assert ItemCodeDecoder.from_pretrained(str(tmp_path / "m")).config.recipe == "text_dense"
    with pytest.raises(ConfigError, match="model.recipe"):
        load_config(None, ["model.recipe=zero"])
    # a checkpoint saved under the earlier name resumes and is scored as this run's; another width is not
    from recgpt.train.checkpoint import model_config_changes
    meta = {"config": {"model": {"recipe": "zero_shot", "d_model": 128}}}
    assert model_config_changes(meta, {"recipe": "text_dense", "d_model": 128}) == []
    assert model_config_changes(meta, {"recipe": "text_dense", "d_model": 256}) == ["model.d_model: 128 -> 256"]


@pytest.mark.parametrize("overrides, fragment", [
    (["model.recipe=nope"], "model.recipe"),
    (["model.dense=null"], "model.codes"),  # text_dense without its dense head: nothing left
    (["model.dense.popularity=none"], "model.dense.query"),  # the transformer would be unused
    (["model.dense.pool=0"], "model.dense.pool"),
    (["model.dense.negatives=in_batch"], "model.dense.popularity"),
    (["model.recipe=hybrid", "model.dense.query=state", "model.dense.pool=3"], "model.dense.pool"),
    (["model.recipe=tiger", "model.codes.output=factorized"], "model.codes.head"),
    (["model.dense.bogus=1"], "model.dense.bogus"),
    (["model.n_heads=0"], "model.n_heads"),
])
def test_bad_combinations_are_refused_naming_the_key(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_an_export_of_the_flat_format_is_refused_and_converts_exactly(tmp_path):
    from recgpt.model.legacy import main

    torch.manual_seed(0)
    new = ItemCodeDecoder(ItemCodeDecoderConfig.from_recipe("text_dense", [8, 8], embed_dim=6, n_layers=1, d_model=16,
                                                            n_heads=2, d_ff=16, dense={"pool": 3}))
    with torch.no_grad():
        for p in new.parameters():
            p.add_(0.1 * torch.randn_like(p))
    old = tmp_path / "old"
    new.save_pretrained(str(old))
    flat = {"model_type": "recgpt_item_decoder", "slot_vocab_sizes": [8, 8], "n_layers": 1, "d_model": 16,
            "n_heads": 2, "d_ff": 16, "dropout": 0.1, "head": "parallel", "text_dim": 6, "max_items": 256,
            "attention": "sdpa", "dense_dim": 6, "code_loss_weight": 0.0, "center_text": True, "dense_query_skip": True,
            "dense_query_pool": 3, "dense_query_state": False, "dense_item_tower": False, "dense_negatives": "catalog",
            "dense_popularity": True, "dense_content_gate": True, "slot_levels": [[], []]}
    (old / "config.json").write_text(json.dumps(flat))
    weights = load_file(str(old / "model.safetensors"))  # 0.1 built the parts that were off: they come along
    weights.update({"dense_head.query.weight": torch.zeros(6, 16), "head.out.0.weight": torch.zeros(8, 16)})
    weights["dense_head.attention"] = weights["dense_head.attention"].reshape(())  # 0.1 saved it 0-dim
    save_file(weights, str(old / "model.safetensors"))
    (old / "item_ids.json").write_text("[]")
    with pytest.raises(ValueError, match="recgpt.model.legacy"):
        ItemCodeDecoder.from_pretrained(str(old))
    assert main([str(old), str(tmp_path / "new")]) == 0
    converted = ItemCodeDecoder.from_pretrained(str(tmp_path / "new"))
    assert converted.config.recipe == "text_dense" and converted.config.dense.popularity == "gated"
    assert (tmp_path / "new" / "item_ids.json").is_file()
    for name, value in new.state_dict().items():
        assert torch.equal(converted.state_dict()[name], value)
    assert main([str(old), str(tmp_path / "new")]) == 2  # never into an existing folder
