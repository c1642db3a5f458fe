"""The persistent id lookup gives exactly Arrow's index_in rows, across batches, slices and string types, and
falls back to index_in when two strings share a hash."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from socialfeat.data import lookup
from socialfeat.data.lookup import IdLookup
from socialfeat.data.reader import _Codes


def _index_in(strings: pa.Array, ids: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.index_in(strings, value_set=ids), -1).to_numpy().astype(np.int32)


def _random_ids(rng: np.random.Generator, count: int) -> list[str]:
    alphabet = list("abcXYZ019_é€ ")
    return ["".join(rng.choice(alphabet, size=rng.integers(0, 9))) for _ in range(count)]


def test_rows_are_index_in_rows_across_adds_slices_and_string_types():
    rng = np.random.default_rng(4)
    known, table = [], IdLookup()
    for _ in range(6):
        strings = pa.array(_random_ids(rng, 400) + known[:50], pa.string())
        strings = strings.slice(7, len(strings) - 20)  # an offset into shared buffers
        rows = table.find(strings)
        np.testing.assert_array_equal(rows, _index_in(strings, table.ids))
        new = pc.unique(strings.filter(pa.array(rows < 0)))
        table.add(new)
        known.extend(new.to_pylist())
        np.testing.assert_array_equal(table.find(strings.cast(pa.large_string())), _index_in(strings, table.ids))
    assert table.hashed and table.ids.to_pylist() == known and len(known) > 300
    assert "" in known and (table.find(pa.array(["", "never seen"])) == [known.index(""), -1]).all()
    large = pa.array(["pad", *known, "never seen"], pa.large_string()).slice(1)  # no cast, so the offset stays
    large_table = IdLookup(large.slice(0, len(known)))
    np.testing.assert_array_equal(large_table.find(large.slice(2)), [*range(2, len(known)), -1])
    assert large_table.hashed  # found by hash, not by the fallback


def test_a_shared_hash_falls_back_to_index_in_with_the_same_rows(monkeypatch):
    monkeypatch.setattr(lookup, "hash_strings", lambda ids: pc.utf8_length(ids).to_numpy().astype(np.uint64))
    table = IdLookup(pa.array(["ab", "c"]))
    assert table.hashed
    assert table.find(pa.array(["zz", "c", "ab", "q"])).tolist() == [-1, 1, 0, -1]  # "zz" hashes as "ab"
    assert not table.hashed
    table.add(pa.array(["zz", "d"]))
    assert table.find(pa.array(["d", "zz", "ab", "e"])).tolist() == [3, 2, 0, -1]
    clash = IdLookup(pa.array(["ab", "cd"]))  # one add whose own strings share a hash
    assert not clash.hashed and clash.find(pa.array(["cd", "ab", "ef"])).tolist() == [1, 0, -1]


@pytest.mark.parametrize("batches", [1, 3])
def test_user_codes_follow_first_appearance_across_batches(batches):
    rng = np.random.default_rng(9)
    users = [f"u{n}" for n in rng.integers(0, 500, size=3000)]
    coder = _Codes()
    parts = np.array_split(np.array(users, dtype=object), batches)
    codes = np.concatenate([coder.encode(pa.array(part.tolist(), pa.string())) for part in parts])
    first_seen = list(dict.fromkeys(users))
    assert coder.ids.to_pylist() == first_seen
    assert codes.tolist() == [first_seen.index(user) for user in users]
