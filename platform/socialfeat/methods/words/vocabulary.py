"""Words from item text, tags and comments (Joulin et al. 2016, section 3.1): normalise, tokenise, count on
tr items only, drop the most frequent words, keep the next K as the dictionary."""

from collections import Counter

import pandas as pd

from socialfeat.errors import UserError
from socialfeat.text import tokens


def item_tokens(
    items: pd.DataFrame, tags: pd.DataFrame | None, comments: pd.DataFrame | None, sources: tuple[str, ...]
) -> pd.Series:
    """item_id -> every token of the item's text, of the tags anyone gave it and of its comments."""
    found = {item: [] for item in items["item_id"]}
    texts = []
    if "text" in sources and "text" in items:
        texts.append(zip(items["item_id"], items["text"]))
    if "tags" in sources and tags is not None:
        texts.append(zip(tags["item_id"], tags["tag"]))
    if "comments" in sources and comments is not None:
        texts.append(zip(comments["item_id"], comments["text"]))
    for pairs in texts:
        for item, text in pairs:
            found[item].extend(tokens(text))
    return pd.Series(found, dtype=object)


class EmptyVocabulary(UserError):
    """No word is left to predict."""


def build_vocabulary(counts: Counter, drop_top: int, size: int) -> tuple[list[str], bool]:
    """(the dictionary: the `size` most frequent words after the `drop_top` most frequent, whether `size`
    was capped by the words available). Ties break alphabetically, so the dictionary is deterministic."""
    ranked = [word for word, _ in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))]
    kept = ranked[drop_top : drop_top + size]
    if not kept:
        raise EmptyVocabulary(
            f"vocabulary.drop_top = {drop_top} removes all {len(ranked)} distinct words of the "
            "tr items: nothing is left to predict (lower vocabulary.drop_top)"
        )
    return kept, len(kept) < size


def word_ids(token_lists: pd.Series, vocabulary: list[str]) -> pd.Series:
    """Each item's distinct dictionary words as sorted ids (items without one get an empty list)."""
    index = {word: n for n, word in enumerate(vocabulary)}
    return token_lists.map(lambda words: sorted({index[w] for w in words if w in index}))
