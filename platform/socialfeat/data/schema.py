"""The dataset contract: one Arrow schema per table, where its files lie, and the rules every reader enforces."""

import os

import pyarrow as pa
import pyarrow.parquet as pq

INTERACTIONS = "interactions.parquet"
ITEMS = "items.parquet"
TAGS = "tags.parquet"
SOCIAL = "social.parquet"
COMMENTS = "comments.parquet"
META = "dataset.yaml"

INTERACTIONS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("value", pa.float32()),
        pa.field("timestamp", pa.int64()),
    ]
)
ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("image", pa.binary()),
        pa.field("image_path", pa.string()),
        pa.field("owner_id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("labels", pa.list_(pa.string())),
    ]
)
TAGS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("tag", pa.string(), nullable=False),
        pa.field("timestamp", pa.int64()),
    ]
)
SOCIAL_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("other_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
    ]
)

COMMENTS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("timestamp", pa.int64()),
    ]
)

SCHEMAS = {
    INTERACTIONS: INTERACTIONS_SCHEMA,
    ITEMS: ITEMS_SCHEMA,
    TAGS: TAGS_SCHEMA,
    SOCIAL: SOCIAL_SCHEMA,
    COMMENTS: COMMENTS_SCHEMA,
}
# Columns a file must have; the others in its schema are optional.
REQUIRED = {
    INTERACTIONS: ("user_id", "item_id"),
    ITEMS: ("item_id",),
    TAGS: ("user_id", "item_id", "tag"),
    SOCIAL: ("user_id", "other_id", "kind"),
    COMMENTS: ("user_id", "item_id", "text"),
}
SOCIAL_KINDS = ("friend", "group")


def kind_of(arrow_type: pa.DataType) -> str:
    """The contract's coarse type family of an Arrow type: string, binary, integer, float, list."""
    if pa.types.is_dictionary(arrow_type):
        return kind_of(arrow_type.value_type)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return "string"
    if (
        pa.types.is_binary(arrow_type)
        or pa.types.is_large_binary(arrow_type)
        or pa.types.is_fixed_size_binary(arrow_type)
    ):
        return "binary"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return "list<string>" if kind_of(arrow_type.value_type) == "string" else "list"
    return str(arrow_type)


# Which stored type families each contract type accepts (a float value column may be stored as integers).
ACCEPTS = {
    "string": {"string"},
    "binary": {"binary"},
    "integer": {"integer"},
    "float": {"float", "integer"},
    "list<string>": {"list<string>"},
}


def shard_folder(name: str) -> str:
    """The folder that holds a table's shards: items.parquet -> items."""
    return name.removesuffix(".parquet")


def table_files(root: str, name: str) -> list[str]:
    """The Parquet files of table `name`, relative to the dataset root, in row order: the single file
    (items.parquet), or else the shards of its folder (items/*.parquet, by name); [] where it has neither."""
    if os.path.isfile(os.path.join(root, name)):
        return [name]
    folder = shard_folder(name)
    if not os.path.isdir(os.path.join(root, folder)):
        return []
    return [f"{folder}/{f}" for f in sorted(os.listdir(os.path.join(root, folder))) if f.endswith(".parquet")]


def has_table(root: str, name: str) -> bool:
    return bool(table_files(root, name))


def table_schema(root: str, name: str) -> pa.Schema:
    """The stored schema of a table's first file (every shard is checked against the contract on read)."""
    return pq.read_schema(os.path.join(root, table_files(root, name)[0]))


def read_columns(root: str, name: str, columns: list[str]) -> pa.Table:
    """`columns` of a table across its files, in row order."""
    return pa.concat_tables(
        [pq.read_table(os.path.join(root, f), columns=columns) for f in table_files(root, name)],
        promote_options="default",
    )


def parquet_files(root: str, name: str) -> list[pq.ParquetFile]:
    """A table's files opened for batch-by-batch reading, in row order."""
    return [pq.ParquetFile(os.path.join(root, f)) for f in table_files(root, name)]
