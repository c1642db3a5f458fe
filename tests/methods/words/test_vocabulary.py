"""The words method's dictionary: normalisation, tr-only counts, drop_top and the cap, class-uniform rows."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from socialfeat.methods import load_config
from socialfeat.methods.words.vocabulary import (
    EmptyVocabulary,
    build_vocabulary,
    document_counts,
    item_tokens,
    missing_sources,
    word_ids,
)
from socialfeat.text import class_uniform_rows, tokens


def test_tokens_are_lower_case_without_accents_numbers_or_punctuation():
    assert tokens("Café #NYC2024, the   Übung!! 42 déjà-vu") == ["cafe", "nyc", "the", "ubung", "deja", "vu"]
    assert tokens("") == [] and tokens(None) == [] and tokens("   \t ") == [] and tokens("!!! 123") == []


def test_items_gather_their_text_tags_and_comments_from_chosen_sources():
    items = pd.DataFrame({"item_id": ["a", "b"], "text": ["Red car", None]})
    tags = pd.DataFrame({"item_id": ["b", "b"], "tag": ["#Blue", "sky"]})
    comments = pd.DataFrame({"item_id": ["a"], "text": ["nice CAR"]})
    found = item_tokens(items, tags, comments, ("text", "tags", "comments"))
    assert found["a"] == ["red", "car", "nice", "car"] and found["b"] == ["blue", "sky"]
    assert item_tokens(items, tags, comments, ("tags",))["a"] == []


def test_the_dictionary_drops_the_top_words_caps_k_and_names_drop_top_when_empty():
    counts = Counter({"the": 50, "a": 40, "car": 9, "sky": 9, "tree": 3})
    assert build_vocabulary(counts, drop_top=2, size=2) == (["car", "sky"], False)  # ties alphabetical
    assert build_vocabulary(counts, drop_top=2, size=10) == (["car", "sky", "tree"], True)
    with pytest.raises(EmptyVocabulary, match="vocabulary.drop_top = 5"):
        build_vocabulary(counts, drop_top=5, size=10)
    ids = word_ids(pd.Series({"x": ["tree", "car", "car", "the"], "y": ["the"]}), ["car", "sky", "tree"])
    assert ids["x"] == [0, 2] and ids["y"] == []


def test_a_word_repeated_in_one_text_counts_once_for_that_item():
    spam = ["buy"] * 1_000_000 + ["car"]
    counts = document_counts([spam, ["car", "sky"], ["car", "sky", "sky"], ["tree"]])
    assert counts == Counter({"car": 3, "sky": 2, "buy": 1, "tree": 1})
    assert build_vocabulary(counts, drop_top=0, size=2) == (["car", "sky"], False)


def test_empty_or_absent_sources_are_named_as_sources_not_drop_top():
    with pytest.raises(ValueError, match="vocabulary.sources"):
        load_config(None, ["method=words", "vocabulary.sources=[]"])
    with pytest.raises(EmptyVocabulary, match="vocabulary.sources"):
        build_vocabulary(Counter(), drop_top=3, size=10)
    items = pd.DataFrame({"item_id": ["a"], "text": ["x"]})
    assert missing_sources(items, None, None, ("text", "tags", "comments")) == ["tags", "comments"]


def test_class_uniform_rows_draw_words_uniformly_whatever_their_frequency():
    # word 0 is on 90 items, word 1 on 10: image-uniform sampling would give word 1 a tenth of the rows
    item_words = pd.Series({f"i{n}": [0] if n < 90 else [1] for n in range(100)})
    rows = class_uniform_rows(item_words, 4000, seed=0)
    share = (rows["label"] == 1).mean()
    assert 0.45 < share < 0.55
    assert rows.loc[rows["label"] == 1, "item"].isin([f"i{n}" for n in range(90, 100)]).all()
    assert rows.equals(class_uniform_rows(item_words, 4000, seed=0)) and rows["label"].dtype == np.int64


def test_translation_precision_finds_translations_among_the_nearest_words():
    from socialfeat.methods.words.embeddings import nearest_words, translation_precision

    vocabulary = ["car", "auto", "sky", "cielo", "tree"]
    embeddings = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0], [0, 0, 1]], np.float32)
    pairs = [["Cíelo", ["sky"]], ["auto", ["car", "coche"]], ["árbol", ["tree"]]]  # árbol: not in the dictionary
    metrics = translation_precision(embeddings, vocabulary, pairs, ks=(1, 2))
    assert metrics["words/translation_pairs"] == 2 and metrics["words/translation_precision@1"] == 1.0
    assert metrics["words/translation_chance@1"] == pytest.approx(0.25)  # 1 of the 4 other words
    shuffled = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0.1, 0], [0, 1, 0.1]], np.float32)  # pairs apart
    assert translation_precision(shuffled, vocabulary, pairs, ks=(1,))["words/translation_precision@1"] == 0.0
    assert nearest_words(embeddings, vocabulary, ["car", "nope"], k=1) == {"car": ["auto"]}
