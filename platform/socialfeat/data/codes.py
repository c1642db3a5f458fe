"""The interaction log on disk as int32 codes and their id maps: written by the data stage, read by the filter."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from socialfeat.artifacts import write_tables
from socialfeat.data.reader import Log
from socialfeat.memory import release_arrow

LOG, USERS, ITEMS = "log.parquet", "users.parquet", "items.parquet"
OUTPUTS = (LOG, USERS, ITEMS)
ROWS_PER_GROUP = 1 << 20


def write_codes(views: Log, item_ids: pa.Array, directory: str) -> None:
    """`views` as codes (user, item, value, timestamp) and the two maps from code to id, in `directory`."""
    columns = {"user": views.user, "item": views.item, "value": views.value}
    if views.timestamp is not None:
        columns["timestamp"] = views.timestamp
    pq.write_table(pa.table(columns), os.path.join(directory, LOG), row_group_size=ROWS_PER_GROUP)
    pq.write_table(pa.table({"user_id": views.users}), os.path.join(directory, USERS))
    pq.write_table(pa.table({"item_id": item_ids}), os.path.join(directory, ITEMS))


def _column(source: pq.ParquetFile, name: str) -> np.ndarray:
    """One column of the log as an array; Arrow's copy of it let go before the next column is read."""
    values = source.read(columns=[name]).column(name).to_numpy()
    release_arrow()
    return values


def read_codes(directory: str) -> tuple[Log, pa.Array]:
    """The log written by write_codes and the item ids its item codes index, read a column at a time (the
    reader holds the log's arrays and one column's Arrow copy besides, not the whole table twice)."""
    source = pq.ParquetFile(os.path.join(directory, LOG))
    users, items = read_ids(directory)
    user, item, value = (_column(source, name) for name in ("user", "item", "value"))
    stamps = _column(source, "timestamp") if "timestamp" in source.schema_arrow.names else None
    return Log(user, item, users, value, stamps), items


def read_ids(directory: str) -> tuple[pa.Array, pa.Array]:
    """The user ids and the item ids that the log's codes index."""
    return tuple(pq.read_table(os.path.join(directory, name)).column(0).combine_chunks() for name in (USERS, ITEMS))


def log_groups(directory: str, columns: list[str] | None = None):
    """The log's row groups (`columns` of them), one at a time, each as a dict of arrays."""
    source = pq.ParquetFile(os.path.join(directory, LOG))
    for group in range(source.num_row_groups):
        table = source.read_row_group(group, columns=columns)
        yield {name: table.column(name).to_numpy() for name in table.column_names}


def _joined(pending: list[dict]) -> dict:
    return {name: np.concatenate([part[name] for part in pending]) for name in pending[0]}


def _regrouped(batches):
    """Batches of code columns (at least one) as groups of ROWS_PER_GROUP rows, the last one shorter."""
    pending, held, full = [], 0, 0
    for batch in batches:
        pending.append(batch)
        held += len(batch["user"])
        while held >= ROWS_PER_GROUP:
            joined = _joined(pending)
            yield {name: values[:ROWS_PER_GROUP] for name, values in joined.items()}
            pending = [{name: values[ROWS_PER_GROUP:] for name, values in joined.items()}]
            held, full = held - ROWS_PER_GROUP, full + 1
    if held or not full:
        yield _joined(pending)


def _with_strings(views: dict, users: pa.Array, item_ids: pa.Array) -> pa.Table:
    columns = {"user_id": users.take(views["user"]), "item_id": item_ids.take(views["item"]), "value": views["value"]}
    return pa.table(columns | ({"timestamp": views["timestamp"]} if "timestamp" in views else {}))


def write_views(batches, users: pa.Array, item_ids: pa.Array, path: str) -> None:
    """Views given as batches of codes (dicts of user, item, value and optionally timestamp arrays; at least
    one batch) written with their string ids (user_id, item_id, value, timestamp) in row groups of
    ROWS_PER_GROUP: one group's strings are built at a time, and the batches' sizes do not show in the file."""
    write_tables((_with_strings(views, users, item_ids) for views in _regrouped(batches)), path)
