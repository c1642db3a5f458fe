"""Words from item text, tags and comments (Joulin et al. 2016, section 3.1): normalise, tokenise, count on
tr items only, drop the most frequent words, keep the next K as the dictionary."""

from collections import Counter

import pandas as pd

from socialfeat.errors import UserError
from socialfeat.text import tokens


def missing_sources(items: pd.DataFrame, tags, comments, sources: tuple[str, ...]) -> list[str]:
    """The sources asked for that the dataset lacks (a warning: the dictionary is built from the others)."""
    present = {"text": "text" in items, "tags": tags is not None, "comments": comments is not None}
    return [source for source in sources if not present[source]]


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


def document_counts(token_lists) -> Counter:
    """word -> how many items' token lists hold it: counted per item, as the paper counts, so one text that
    repeats a word a million times does not outrank the real words."""
    return Counter(word for words in token_lists for word in set(words))


class EmptyVocabulary(UserError):
    """No word is left to predict."""


def build_vocabulary(counts: Counter, drop_top: int, size: int) -> tuple[list[str], bool]:
    """(the dictionary: the `size` most frequent words after the `drop_top` most frequent, whether `size`
    was capped by the words available). Ties break alphabetically, so the dictionary is deterministic."""
    ranked = [word for word, _ in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))]
    if not ranked:
        raise EmptyVocabulary(
            "the tr items have no words in the sources read (vocabulary.sources: text, tags, comments): "
            "nothing to predict; name sources the dataset has"
        )
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
