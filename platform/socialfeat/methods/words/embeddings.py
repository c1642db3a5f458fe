"""Word embeddings of a trained word predictor (the rows of its output layer): nearest words, and whether a
word's nearest neighbours are its translations (Joulin et al. 2016, Table 5)."""

import numpy as np

from socialfeat.stats.retrieval import cosine_neighbours
from socialfeat.text import tokens


def translation_precision(embeddings: np.ndarray, vocabulary: list[str], pairs: list, ks=(1, 10)) -> dict:
    """For each (word, [its translations]) with both sides in the dictionary: is a translation among the
    word's k nearest dictionary words (cosine, itself left out)? Returns precision@k, the chance level of a
    random ranking and the number of words asked."""
    index = {word: n for n, word in enumerate(vocabulary)}
    asked = []
    for word, translations in pairs:
        source = "".join(tokens(word))
        targets = {index["".join(tokens(t))] for t in translations if "".join(tokens(t)) in index}
        if source in index and targets - {index[source]}:
            asked.append((index[source], targets - {index[source]}))
    if not asked:
        return {"words/translation_pairs": 0}
    ranked = cosine_neighbours(embeddings[[a for a, _ in asked]], embeddings, max(ks) + 1, exclude_self=False)
    metrics = {"words/translation_pairs": len(asked)}
    for k in ks:
        top = [[n for n in row if n != source][:k] for row, (source, _) in zip(ranked, asked)]
        metrics[f"words/translation_precision@{k}"] = float(
            np.mean([bool(set(t) & targets) for t, (_, targets) in zip(top, asked)])
        )
        chance = [1 - _none_chosen(len(vocabulary) - 1, len(targets), k) for _, targets in asked]
        metrics[f"words/translation_chance@{k}"] = float(np.mean(chance))
    return metrics


def _none_chosen(population: int, good: int, draws: int) -> float:
    """The probability that `draws` items taken without replacement from `population` miss all `good` ones."""
    p = 1.0
    for n in range(draws):
        p *= max(0.0, (population - good - n) / (population - n))
    return p


def nearest_words(embeddings: np.ndarray, vocabulary: list[str], words: list[str], k: int = 5) -> dict:
    """{word: its k nearest dictionary words} for the given words found in the dictionary."""
    index = {word: n for n, word in enumerate(vocabulary)}
    asked = [w for w in words if w in index]
    if not asked:
        return {}
    ranked = cosine_neighbours(
        embeddings[[index[w] for w in asked]], embeddings, min(k + 1, len(vocabulary)), exclude_self=False
    )
    return {w: [vocabulary[n] for n in row if n != index[w]][:k] for w, row in zip(asked, ranked)}
