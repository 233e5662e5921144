"""The relational re-ranker: a learned part trained on source domains that re-orders recgpt's per-user content
kNN + popularity rule plus the log's item co-occurrence on a catalog it never saw (`recgpt rerank` trains it,
`predict.reranker` / `Recommender.set_reranker` use it)."""
from recgpt.predict.rerank.context import COOC_BASE, DomainContext
from recgpt.predict.rerank.model import Reranker

__all__ = ["COOC_BASE", "DomainContext", "Reranker", "catalog_context", "fallback_note"]


def catalog_context(rec) -> DomainContext:
    """The DomainContext of a Recommender's catalog: its text embeddings, popularity and log (set_log), cached
    until the catalog or the log changes."""
    if "rerank" not in rec.log_cache:
        rows = [rec.catalog.rows([str(i) for i in s])[0] for s in rec.log_sequences]
        rec.log_cache["rerank"] = DomainContext(rec.catalog.text_emb.float(), rec.catalog.popularity, rows, rec.log)
    return rec.log_cache["rerank"]


def fallback_note(rec, strategy: str, horizon: int):
    """Why a Recommender with a re-ranker scores without it this call (None: it uses it)."""
    if rec.reranker is None:
        return None
    if strategy != "exact" or horizon != 1:
        return f"the re-ranker scores one exact step (strategy {strategy}, horizon {horizon}): scored without it"
    if rec.catalog.text_emb is None:
        return "the catalog has no item text embeddings: scored without the re-ranker"
    if rec.catalog.popularity is None or not rec.log_sequences:
        return ("the re-ranker reads the catalog's interaction log (popularity and set_log, as a prepared folder's "
                "interactions.parquet gives them): none here, scored without it")
    return None
