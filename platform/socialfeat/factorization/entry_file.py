"""The sampled entries' Parquet file, written a block of users at a time and read back a fold at a time: neither
side holds the whole entry set as a frame (at 100M views it is ~250M entries)."""

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

FOLDS = ["train", "val"]  # the entries' folds (tr's test rows are not entries), as codes 0 and 1
ROWS_PER_GROUP = 1 << 20
SCHEMA = pa.schema(
    [
        ("user", pa.int32()),
        ("item", pa.int32()),
        ("value", pa.float32()),
        ("fold", pa.dictionary(pa.int8(), pa.string())),  # a byte an entry, read back as a categorical
    ]
)
NEGATIVE_STREAM = 2  # the negatives' validation draws: split.validation_mask's stream 2


def _group(users: np.ndarray, items: np.ndarray, value: float, fold_codes: np.ndarray) -> pa.Table:
    folds = pa.DictionaryArray.from_arrays(pa.array(fold_codes.astype(np.int8)), pa.array(FOLDS))
    values = pa.array(np.full(len(users), value, np.float32))
    return pa.Table.from_arrays([pa.array(users), pa.array(items), values, folds], schema=SCHEMA)


def _write(writer: pq.ParquetWriter, users, items, value: float, is_val: np.ndarray) -> None:
    for start in range(0, len(users), ROWS_PER_GROUP):
        end = start + ROWS_PER_GROUP
        writer.write_table(_group(users[start:end], items[start:end], value, is_val[start:end]))


def entry_groups(
    positives: tuple[np.ndarray, np.ndarray, np.ndarray],
    negative_blocks: Iterable[tuple[np.ndarray, np.ndarray]],
    val_fraction: float,
    seed: int,
):
    """(users, items, value, is_val) of the positives (users, items, is_val) with value 1, then of each block's
    negatives (users, items) with value 0 and a validation draw each: in the order and with the draws of one
    `validation_mask` over all the negatives (a Generator's uniform draws do not depend on how they are
    batched)."""
    yield (*positives[:2], 1.0, positives[2])
    rng = np.random.default_rng([seed, NEGATIVE_STREAM])
    for users, items in negative_blocks:
        yield users, items, 0.0, rng.random(len(users)) < val_fraction


def write_entries(path: str, groups: Iterable[tuple]) -> int:
    """entry_groups' `groups` written to `path` as they come. Returns the number of negatives."""
    negatives = 0
    with pq.ParquetWriter(path, SCHEMA) as writer:
        for users, items, value, is_val in groups:
            _write(writer, users, items, value, is_val)
            negatives += len(users) if value == 0 else 0
    return negatives


WHERE = {
    "train": lambda fold, value: fold == 0,
    "val": lambda fold, value: fold == 1,
    "evaluated": lambda fold, value: (fold == 1) | (value > 0),  # the positives and the validation rows
}


def _fold_codes(column: pa.ChunkedArray) -> np.ndarray:
    codes = []
    for chunk in column.chunks:
        lookup = np.array([FOLDS.index(name) for name in chunk.dictionary.to_pylist()], np.int8)
        codes.append(lookup[chunk.indices.to_numpy(zero_copy_only=False)])
    return np.concatenate(codes) if codes else np.zeros(0, np.int8)


def read_entries(path: str, where: str) -> pd.DataFrame:
    """The entries `where` selects ("train", "val", or "evaluated": every positive and every validation row),
    in file order, as a frame (user, item, value, fold as a categorical of FOLDS); read a row group at a time,
    so the reader holds the selected rows and one group besides."""
    keep = WHERE[where]
    parts = {name: [] for name in SCHEMA.names}
    source = pq.ParquetFile(path, read_dictionary=["fold"])
    for group in range(source.num_row_groups):
        table = source.read_row_group(group, columns=SCHEMA.names)
        fold, value = _fold_codes(table["fold"]), table["value"].to_numpy()
        kept = keep(fold, value)
        parts["user"].append(table["user"].to_numpy()[kept])
        parts["item"].append(table["item"].to_numpy()[kept])
        parts["value"].append(value[kept])
        parts["fold"].append(fold[kept])
    columns = {name: _joined(parts.pop(name), SCHEMA.field(name).type) for name in SCHEMA.names}
    columns["fold"] = pd.Categorical.from_codes(columns["fold"], categories=FOLDS)
    return pd.DataFrame(columns, copy=False)  # the joined arrays as they are: no second copy


def _joined(chunks: list, kind: pa.DataType) -> np.ndarray:
    """One column's kept chunks as one array (the columns are joined one by one, each column's chunks let go
    before the next is joined)."""
    if not chunks:
        return np.zeros(0, np.int8 if pa.types.is_dictionary(kind) else kind.to_pandas_dtype())
    return np.concatenate(chunks)
