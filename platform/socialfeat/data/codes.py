"""The interaction log on disk as int32 codes and their id maps: written by the data stage, read by the filter."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
    users = pq.read_table(os.path.join(directory, USERS)).column("user_id").combine_chunks()
    items = pq.read_table(os.path.join(directory, ITEMS)).column("item_id").combine_chunks()
    user, item, value = (_column(source, name) for name in ("user", "item", "value"))
    stamps = _column(source, "timestamp") if "timestamp" in source.schema_arrow.names else None
    return Log(user, item, users, value, stamps), items


def write_views(views: Log, item_ids: pa.Array, rows: np.ndarray, path: str) -> None:
    """The views at `rows` with their string ids (user_id, item_id, value, timestamp), a row group at a time,
    so that only one group's strings are ever built."""
    writer = None
    try:
        for start in range(0, max(1, len(rows)), ROWS_PER_GROUP):
            at = rows[start : start + ROWS_PER_GROUP]
            columns = {
                "user_id": views.users.take(views.user[at]),
                "item_id": item_ids.take(views.item[at]),
                "value": views.value[at],
            }
            if views.timestamp is not None:
                columns["timestamp"] = views.timestamp[at]
            group = pa.table(columns)
            writer = writer or pq.ParquetWriter(path, group.schema)
            writer.write_table(group)
    finally:
        if writer is not None:
            writer.close()
