"""eval.score_fit_sources: the pretraining datasets' held-out users as further fit domains, on the tiny real
corpus (configs/tiny.yaml datasets)."""
from recgpt.config import load_config
from recgpt.data import load_corpus, load_prepared
from recgpt.predict.hybrid import heldout_source_domains


def test_fit_sources_are_exactly_the_corpus_heldout_users(tiny_corpus, capsys):
    corpus = load_corpus(tiny_corpus)
    held = set(corpus.sequences["heldout"].unique("user_id"))
    trained = set(corpus.sequences["train"].unique("user_id"))
    domains = heldout_source_domains(tiny_corpus, min_users=1)
    names = [d["name"] for d in corpus.manifest["datasets"]]
    assert [d.name for d in domains] == [f"{n} (held-out users)" for n in names if any(u.startswith(n + ":") for u in held)]
    got = {f"{d.name.removesuffix(' (held-out users)')}:{u}" for d in domains
           for u in d.interactions["user_id"].astype(str).unique()}
    assert got == held and not got & trained  # never a user whose sequences were trained on
    for d in domains:  # each held-out user's whole log, as prepared
        full = load_prepared(d.path).interactions
        mine = full[full["user_id"].astype(str).isin(set(d.interactions["user_id"].astype(str)))]
        assert len(d.interactions) == len(mine) > 0 and list(d.interactions["item_id"]) == list(mine["item_id"])
        assert d.path.name in names  # the folder keeps the dataset's name: the catalog's id namespace
    assert heldout_source_domains(tiny_corpus, min_users=10 ** 6) == []
    warning = capsys.readouterr().err
    assert "fewer than 1000000 held-out users" in warning and all(n in warning for n in names)


def test_fit_sources_is_an_eval_switch():
    cfg = load_config(None, ["eval.score_fit=[dense,knn]", "eval.score_fit_domains=[steam]",
                             "eval.score_fit_sources=true"])
    assert cfg.eval.score_fit_sources is True and load_config(None, []).eval.score_fit_sources is False
