"""Text and tag cores the methods share: tokens of free text, normalised hashtags, PPMI-SVD co-occurrence
embeddings and class-uniform (label, item) draws."""

import re
import unicodedata

import numpy as np
import pandas as pd

WORD = re.compile(r"[a-z]+")


def tokens(text) -> list[str]:
    """Lower-cased words with accents, numbers, punctuation (the # of hashtags) and other symbols removed."""
    if not isinstance(text, str):  # a null cell (None or NaN)
        return []
    folded = unicodedata.normalize("NFKD", text.lower())
    return WORD.findall("".join(c for c in folded if not unicodedata.combining(c)))


def normalise(tag) -> str:
    """Lower-case, without '#', accents or surrounding blanks: #NYC, nyc and Nýc are one hashtag."""
    if not isinstance(tag, str):
        return ""
    folded = unicodedata.normalize("NFKD", tag.strip().lower().replace("#", ""))
    return "".join(c for c in folded if not unicodedata.combining(c)).strip()


def ppmi_svd(tag_lists: list, tags: int, dim: int) -> np.ndarray:
    """tags x `dim` embeddings: the truncated SVD (U sqrt(S)) of the positive pointwise mutual information of
    hashtag co-occurrence within posts, rows L2-normalised (a hashtag seen alone gets a one-hot-like row
    through the diagonal, which counts a post's own hashtags)."""
    counts = np.zeros((tags, tags))
    for ids in tag_lists:
        ids = np.asarray(ids, np.int64)
        counts[np.ix_(ids, ids)] += 1
    total, marginal = counts.sum(), counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts * total / np.outer(marginal, marginal))
    ppmi = np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0)
    u, s, _ = np.linalg.svd(ppmi, hermitian=True)
    embeddings = np.zeros((tags, dim))
    kept = min(dim, tags)
    embeddings[:, :kept] = u[:, :kept] * np.sqrt(s[:kept])
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def class_uniform_rows(item_words: pd.Series, rows: int, seed: int) -> pd.DataFrame:
    """`rows` draws of (item, label): a dictionary word uniformly among those some item has, then an item
    that has it uniformly: the paper's class-uniform sampling, each row with one target word."""
    rng = np.random.default_rng(seed)
    by_word: dict[int, list] = {}
    for item, words in item_words.items():
        for word in words:
            by_word.setdefault(word, []).append(item)
    words = np.array(sorted(by_word))
    chosen = words[rng.integers(0, len(words), rows)]
    items = [by_word[w][rng.integers(0, len(by_word[w]))] for w in chosen]
    return pd.DataFrame({"item": items, "label": chosen.astype(np.int64)})
