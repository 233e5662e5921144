"""The score fit stored with an exported model (`recgpt eval` with eval.score_fit): the held-out source domains'
folders checked, the fit made on the export and written beside it (config.json's score_weights, score_fit.json
with the grid: the prior of predict.weights=self), and its one-line summary. The fit itself:
recgpt.predict.hybrid."""
from recgpt.model.files import save_model
from recgpt.predict.hybrid import SCORE_FIT, fit_and_store


def fit_domain_folders(cfg) -> list:
    """The prepared folders of eval.score_fit's held-out source domains (eval.fit_domains), each checked whole:
    called before anything is written, so that a wrong name or an unprepared folder leaves the export as it was."""
    from recgpt.data.prepare import FILES
    from recgpt.io import require_files
    from recgpt.predict.run import resolve_dataset

    return [require_files(resolve_dataset(name, cfg.data, "eval.score_fit_domains"), FILES,
                          f"fit domain {name!r} (eval.score_fit_domains)") for name in cfg.eval.fit_domains]


def fit_exported(model_dir, cfg, folders) -> dict:
    """Fit eval.score_fit's weights on the exported model at `model_dir` over the prepared `folders` with
    eval.score_fit_users LOO users each; save the model there again (the weights in its config.json, so that
    from_pretrained scores with them) and the fit with its grid table as score_fit.json. Returns the fit without
    the table."""
    from pathlib import Path

    from recgpt.config import ConfigError
    from recgpt.data import load_prepared
    from recgpt.io import write_json
    from recgpt.predict.recommender import Recommender

    rec = Recommender.from_pretrained(model_dir, embed_cfg=cfg.embed, device=cfg.predict.device, knn=cfg.predict.knn)
    config = rec.model.config  # the exported model's parts decide, not the config eval was called with
    for name, part in (("code", config.codes), ("dense", config.dense)):
        if name in cfg.eval.score_fit and part is None:
            raise ConfigError(f"eval.score_fit: the {name} component needs a model with a {name} head; the model "
                              f"at {model_dir} (recipe {config.recipe}) has none")
    fit = fit_and_store(rec, [load_prepared(f) for f in folders], list(cfg.eval.score_fit),
                        cfg.eval.score_fit_users, seed=cfg.predict.seed)
    save_model(rec.model, model_dir)
    write_json(Path(model_dir) / SCORE_FIT, fit)  # the grid table too: the prior of predict.weights=self
    return {key: value for key, value in fit.items() if key != "table"}


def fit_summary(fit: dict) -> str:
    """One line: the fitted weights, their NDCG@k per fit domain, the best single component and the priors."""
    def rounded(values: dict) -> dict:
        return {name: round(v, 4) for name, v in values.items()}

    singles = {d: max(s.items(), key=lambda kv: kv[1]) for d, s in fit["single_components"].items()}
    line = (f"score weights {fit['weights']} fitted on {fit['dataset']}: NDCG@10 {rounded(fit['ndcg'])}; "
            f"best single component {', '.join(f'{d} {n} {v:.4f}' for d, (n, v) in singles.items())}")
    if fit.get("priors"):
        line += f"; priors {fit['priors']['weights']} NDCG@10 {rounded(fit['priors']['ndcg'])}"
    return line
