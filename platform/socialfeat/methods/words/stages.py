"""The stages of weakly supervised word prediction (Joulin et al. 2016): the dictionary, the CNN trained to
predict an image's words, and how well it predicts the words of held-out (te) images."""

import logging
import os

import numpy as np
import pandas as pd
import torch

from socialfeat import artifacts
from socialfeat.methods.words.embeddings import nearest_words, translation_precision
from socialfeat.methods.words.vocabulary import (
    build_vocabulary,
    document_counts,
    item_tokens,
    missing_sources,
    word_ids,
)
from socialfeat.pipeline.train import holdout_mask, tower_outputs, train_task
from socialfeat.stages import StageContext
from socialfeat.stats import significance
from socialfeat.text import class_uniform_rows
from socialfeat.training import multilabel
from socialfeat.training.multilabel import make_task

log = logging.getLogger(__name__)


def vocabulary(ctx: StageContext, tmp: str) -> dict:
    """Count the tr items each word appears in (te never leaks into the dictionary), keep the dictionary, map
    items."""
    cfg, dataset = ctx.cfg.vocabulary, ctx.dataset()
    parts = pd.read_parquet(ctx.path("split", "items.parquet")).set_index("item_id")["part"]
    sources = tuple(cfg.sources)
    missing = missing_sources(dataset.items, dataset.tags, dataset.comments, sources)
    if missing:
        log.warning(
            "vocabulary.sources names %s, which this dataset lacks: the dictionary is built from %s",
            ", ".join(missing),
            ", ".join(s for s in sources if s not in missing) or "nothing",
        )
    found = item_tokens(dataset.items, dataset.tags, dataset.comments, sources)
    found = found[found.index.isin(parts.index)]
    tr = found[parts.reindex(found.index).to_numpy() == "tr"]
    tr_counts = document_counts(tr)
    words, capped = build_vocabulary(tr_counts, cfg.drop_top, cfg.size)
    if capped:
        log.warning(
            "vocabulary.size %d capped to the %d words the tr items have after dropping the top %d",
            cfg.size,
            len(words),
            cfg.drop_top,
        )
    ids = word_ids(found, words)
    pd.DataFrame({"word": words}).to_parquet(os.path.join(tmp, "vocabulary.parquet"), index=False)
    pd.DataFrame(tr_counts.most_common(), columns=["word", "count"]).to_parquet(
        os.path.join(tmp, "counts.parquet"), index=False
    )
    frame = pd.DataFrame({"item_id": ids.index, "part": parts.reindex(ids.index).to_numpy(), "words": ids.to_numpy()})
    frame.to_parquet(os.path.join(tmp, "item_words.parquet"), index=False)
    with_words = frame[frame["words"].map(len) > 0]
    tr_words = with_words[with_words["part"] == "tr"]
    return {
        "vocabulary/size": len(words),
        "vocabulary/capped": int(capped),
        "vocabulary/words_per_item": float(tr_words["words"].map(len).mean()) if len(tr_words) else 0.0,
        "vocabulary/coverage": len(tr_words) / max(1, int((frame["part"] == "tr").sum())),
        "vocabulary/items_without_words": int(len(frame) - len(with_words)),
    }


def _item_words(ctx: StageContext) -> pd.DataFrame:
    frame = pd.read_parquet(ctx.path("vocabulary", "item_words.parquet"))
    frame["words"] = frame["words"].map(list)
    return frame[frame["words"].map(len) > 0]


def train(ctx: StageContext, tmp: str) -> dict:
    """The CNN on the tr items that have a dictionary word (and an image)."""
    words = _item_words(ctx)
    items = ctx.dataset().items
    words = words[(words["part"] == "tr") & words["item_id"].isin(items.loc[items["image_ref"].notna(), "item_id"])]
    classes = len(pd.read_parquet(ctx.path("vocabulary", "vocabulary.parquet")))
    by_item = words.set_index("item_id")["words"]
    if ctx.cfg.words.loss in ("softmax", "sampled_softmax"):
        rows = class_uniform_rows(by_item, len(by_item), ctx.cfg.words.seed)
    else:
        rows = pd.DataFrame({"item": by_item.index, "label": by_item.map(lambda w: w[0]).to_numpy(np.int64)})
    rows["words"] = by_item.reindex(rows["item"]).to_numpy()
    task = make_task(ctx.cfg.words.loss, classes, ctx.cfg.words.negatives)
    return train_task(ctx, tmp, task, rows, holdout_mask(rows["item"], ctx.cfg.training.holdout_fraction))


def _precision_recall(top: np.ndarray, truth: list) -> tuple[np.ndarray, np.ndarray]:
    """Per item: precision and recall of its ranked words (the metrics are their means)."""
    hits = np.array([len(set(row) & set(words)) for row, words in zip(top, truth)], np.float64)
    return hits / top.shape[1], hits / np.array([len(w) for w in truth])


def top_words(vectors: np.ndarray, weights: np.ndarray, bias: np.ndarray, k: int = 10, chunk: int = 8192):
    """Each row's `k` highest-scoring word ids, best first, in chunks of words (at K = 100k an items x K
    score matrix would not fit): the training tasks' own ranking."""
    ids, _ = multilabel.top_words(
        *(torch.from_numpy(np.asarray(a)) for a in (vectors, weights, bias)), k=k, chunk=chunk
    )
    return ids.numpy()


def predictions(ctx: StageContext, tmp: str) -> dict:
    """Precision and recall at 10 of the predicted words of te images against their dictionary words, beside
    the K most frequent words predicted for every image."""
    words = _item_words(ctx)
    te = words[words["part"] == "te"].set_index("item_id")["words"]
    if te.empty:
        return {"words/te_items": 0}
    found, vectors, model = tower_outputs(ctx, te.index.to_numpy())
    embeddings, bias = model["head.weight"].numpy(), model["head.bias"].numpy().reshape(-1)
    truth = te.reindex(found).tolist()
    top = top_words(vectors, embeddings, bias)
    frequency = np.bincount(np.concatenate(words[words["part"] == "tr"]["words"].to_numpy()), minlength=len(embeddings))
    popular = np.tile(np.argsort(-frequency, kind="stable")[:10], (len(found), 1))
    pd.DataFrame({"item_id": found, "predicted": top.tolist()}).to_parquet(os.path.join(tmp, "predicted.parquet"))
    samples = {}
    for prefix, ranked in (("words", top), ("words/frequency", popular)):
        precision, recall = _precision_recall(ranked, truth)
        samples |= {f"{prefix}/precision@10": (found, precision), f"{prefix}/recall@10": (found, recall)}
    intervals = significance.record(tmp, samples, ctx.cfg.split.seed)
    metrics = {"words/te_items": len(found)} | significance.means(samples) | intervals
    return metrics | _embedding_metrics(ctx, tmp, embeddings, frequency)


def _embedding_metrics(ctx: StageContext, tmp: str, embeddings: np.ndarray, frequency: np.ndarray) -> dict:
    """Nearest words of the most frequent words (nearest_words.json) and, where the data knows translation
    pairs (the synthetic generator's foreign words), translation precision."""
    vocabulary = pd.read_parquet(ctx.path("vocabulary", "vocabulary.parquet"))["word"].tolist()
    frequent = [vocabulary[n] for n in np.argsort(-frequency, kind="stable")[:12]]
    artifacts.write_json(os.path.join(tmp, "nearest_words.json"), nearest_words(embeddings, vocabulary, frequent))
    pairs = ctx.dataset().meta.get("planted", {}).get("translations")
    return translation_precision(embeddings, vocabulary, pairs) if pairs else {}
