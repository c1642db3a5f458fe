"""The one validating reader of the dataset contract: every violation named by file, column and row."""

import bisect
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from socialfeat.data import schema
from socialfeat.data.images import EXTERNAL_KEY, MAX_BYTES, ImagePolicy, reference_problem
from socialfeat.errors import UserError

log = logging.getLogger(__name__)


class DatasetError(UserError):
    """The dataset breaks the contract; `violations` holds one message per problem."""

    def __init__(self, violations: list[str]):
        self.violations = list(violations)
        super().__init__("\n".join(self.violations))


class UndeclaredImages(RuntimeError):
    """A stage read image files without declaring it: a bug in the method, not in the user's input."""


@dataclass
class Dataset:
    """A validated dataset in memory; image bytes stay on disk until a stage asks for them."""

    root: str
    interactions: pd.DataFrame | None  # user_id, item_id, value (float32), timestamp (int64, optional)
    items: pd.DataFrame  # item_id, owner_id, text, labels, image_ref: "embedded" | path | None
    tags: pd.DataFrame | None = None
    social: pd.DataFrame | None = None
    comments: pd.DataFrame | None = None
    meta: dict = field(default_factory=dict)
    handled: dict = field(default_factory=dict)  # contract deviations fixed on read, with counts
    source: str | None = None  # the storage URI the dataset was fetched from (None: a local directory)
    max_bytes: int = MAX_BYTES  # images.max_bytes
    images_refused_for: str | None = None  # a stage that may not read images (it does not declare them)
    scanned: dict | None = None  # counts of interactions validated batch by batch and not held (data check)

    @property
    def images(self) -> ImagePolicy:
        """What this dataset's image references may name (see ImagePolicy)."""
        if self.images_refused_for is not None:
            raise UndeclaredImages(
                f"stage {self.images_refused_for!r} read the dataset's images, which it does not declare "
                "(Stage(..., images=True)): its cache key would not see an image change"
            )
        return ImagePolicy(os.path.abspath(self.root), self.meta.get(EXTERNAL_KEY) is True, self.source, self.max_bytes)

    @property
    def image_column(self) -> str | None:
        columns = schema.table_schema(self.root, schema.ITEMS).names
        return "image" if "image" in columns else ("image_path" if "image_path" in columns else None)


@dataclass(frozen=True)
class Place:
    """Where a table's rows came from: its files (one, or the shards of its folder) and the row of the read
    frame each file starts at, so that a violation names the file and the row within it."""

    name: str  # the table: items.parquet
    files: tuple[str, ...] = ()
    starts: tuple[int, ...] = (0,)

    def of(self, row: int) -> tuple[str, int]:
        """(file, row within it) of a row of the read frame."""
        if not self.files:
            return self.name, row
        shard = bisect.bisect_right(self.starts, row) - 1
        return self.files[shard], row - self.starts[shard]


def _type_violations(table: str, file: str, arrow_schema: pa.Schema) -> list[str]:
    """Missing required columns and columns whose stored type the contract does not accept, in one of the
    files of `table`."""
    expected = schema.SCHEMAS[table]
    problems = [
        f"{file}: required column '{c}' is missing (found: {', '.join(arrow_schema.names) or 'none'})"
        for c in schema.REQUIRED[table]
        if c not in arrow_schema.names
    ]
    for column in expected:
        if column.name not in arrow_schema.names:
            continue
        want, got = schema.kind_of(column.type), schema.kind_of(arrow_schema.field(column.name).type)
        if got not in schema.ACCEPTS[want]:
            problems.append(
                f"{file}: column '{column.name}' has type {arrow_schema.field(column.name).type}, expected {want}"
            )
    return problems


def _first_at(place: Place, rows: np.ndarray) -> tuple[str, str]:
    """The file to name for rows of the read frame (the first one's), and ' at row R' within it."""
    file, row = place.of(int(rows[0]))
    return file, f"first at row {row}"


def _null_violations(place: Place, frame: pd.DataFrame, columns) -> list[str]:
    problems = []
    for column in columns:
        missing = np.flatnonzero(frame[column].isna().to_numpy())
        if len(missing):
            file, at = _first_at(place, missing)
            problems.append(f"{file}: column '{column}' is null in {len(missing)} row(s), {at}")
    return problems


def _readable_columns(root: str, name: str, file: str, problems: list[str], columns=None) -> list[str] | None:
    """The contract's columns (or `columns`) that one file of table `name` holds; None, with its problems
    named, when the file is not Parquet or breaks the contract's types."""
    try:
        arrow_schema = pq.read_schema(os.path.join(root, file))
    except (pa.ArrowInvalid, OSError) as error:
        problems.append(f"{file}: not a readable Parquet file ({error})")
        return None
    type_problems = _type_violations(name, file, arrow_schema)
    problems.extend(type_problems)
    if type_problems:
        return None
    return [c for c in (columns or schema.SCHEMAS[name].names) if c in arrow_schema.names]


def _read_table(root: str, name: str, problems: list[str], columns=None) -> tuple[pd.DataFrame | None, Place]:
    """A table's rows across its files, each file's schema checked against the contract and named."""
    files, frames, starts = schema.table_files(root, name), [], [0]
    for file in files:
        wanted = _readable_columns(root, name, file, problems, columns)
        if wanted is None:
            continue
        frames.append(pq.read_table(os.path.join(root, file), columns=wanted).to_pandas())
        starts.append(starts[-1] + len(frames[-1]))
    place = Place(name, tuple(files), tuple(starts[:-1]))
    if len(frames) < len(files) or not files:
        return None, place
    return (frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)), place


def _clean_interactions(frame: pd.DataFrame, place: Place, problems: list[str]) -> pd.DataFrame:
    if frame.empty:
        problems.append(f"{place.name}: has no rows; at least one interaction is needed")
        return frame
    problems.extend(_null_violations(place, frame, ("user_id", "item_id")))
    frame["user_id"] = frame["user_id"].astype(str)
    frame["item_id"] = frame["item_id"].astype(str)
    if "value" not in frame:
        frame["value"] = 1.0
    values = frame["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        file, at = _first_at(place, bad)
        problems.append(f"{file}: column 'value' is null, NaN or infinite in {len(bad)} row(s), {at}")
    frame["value"] = values.astype(np.float32)
    if "timestamp" in frame:
        problems.extend(_null_violations(place, frame, ("timestamp",)))
    return frame


SCAN_ROWS = 1 << 20  # interactions validated at a time by scan_interactions
MAX_SCAN_PROBLEMS = 20  # each batch names its own violations: a bad exporter would print thousands


def _pair_hashes(frame: pd.DataFrame) -> np.ndarray:
    return pd.util.hash_pandas_object(frame[["user_id", "item_id"]], index=False).to_numpy()


def scan_interactions(root: str, known: pd.Index, problems: list[str]) -> dict:
    """Validate interactions.parquet (or its shards) SCAN_ROWS rows at a time, as the reader does the whole
    table, and count them: memory is one batch plus 8 bytes a view (the hash of each (user, item) pair,
    for the duplicates), never the log as strings. Violations name the file and the row within it."""
    name, rows, users, items, pairs = schema.INTERACTIONS, 0, np.zeros(0, np.uint64), np.zeros(0, np.uint64), []
    found: list[str] = []  # this table's violations, capped below; `problems` may hold others already
    for file in schema.table_files(root, name):
        wanted = _readable_columns(root, name, file, found)
        if wanted is None:
            continue
        start = 0
        for batch in pq.ParquetFile(os.path.join(root, file)).iter_batches(batch_size=SCAN_ROWS, columns=wanted):
            frame = batch.to_pandas()
            place = Place(name, (file,), (-start,))
            frame = _clean_interactions(frame, place, found) if len(frame) else frame
            if len(frame):
                found.extend(_unknown_item_violations(place, frame, known))
                users = np.union1d(users, pd.util.hash_pandas_object(frame["user_id"], index=False).to_numpy())
                items = np.union1d(items, pd.util.hash_pandas_object(frame["item_id"], index=False).to_numpy())
                pairs.append(np.unique(_pair_hashes(frame)))
            start, rows = start + len(batch), rows + len(batch)
    if not rows:
        found.append(f"{name}: has no rows; at least one interaction is needed")
    if len(found) > MAX_SCAN_PROBLEMS:
        found[MAX_SCAN_PROBLEMS:] = [f"{name}: ... and {len(found) - MAX_SCAN_PROBLEMS} more problems like these"]
    problems.extend(found)
    distinct = len(np.unique(np.concatenate(pairs))) if pairs else 0
    return {"rows": rows, "users": len(users), "items": len(items), "duplicates": rows - distinct}


def _without_duplicates(frame: pd.DataFrame, handled: dict) -> pd.DataFrame:
    name = schema.INTERACTIONS
    duplicated = frame.duplicated(["user_id", "item_id"], keep="last")
    handled["duplicate_interactions_removed"] = int(duplicated.sum())
    if duplicated.any():
        log.warning(
            "%s: %d duplicate (user_id, item_id) rows removed, keeping the last of each", name, int(duplicated.sum())
        )
    return frame[~duplicated].reset_index(drop=True)


def _clean_items(frame: pd.DataFrame, place: Place, problems: list[str]) -> pd.DataFrame:
    problems.extend(_null_violations(place, frame, ("item_id",)))
    duplicated = np.flatnonzero(frame["item_id"].duplicated().to_numpy())
    if len(duplicated):
        file, at = _first_at(place, duplicated)
        problems.append(
            f"{file}: column 'item_id' repeats in {len(duplicated)} row(s), {at} "
            f"('{frame['item_id'].iloc[duplicated[0]]}')"
        )
    return frame


def _unknown_item_violations(place: Place, frame: pd.DataFrame, known: pd.Index) -> list[str]:
    unknown = np.flatnonzero(~frame["item_id"].isin(known).to_numpy())
    if not len(unknown):
        return []
    file, at = _first_at(place, unknown)
    return [
        f"{file}: column 'item_id' names {len(unknown)} item(s) absent from {schema.ITEMS}, "
        f"{at} ('{frame['item_id'].iloc[unknown[0]]}')"
    ]


def _null_label_violations(labels: pa.ChunkedArray, place: Place) -> list[str]:
    """A null inside a labels list (an empty list or a null list is fine: no labels)."""
    labels = labels.combine_chunks()
    inner_null = np.flatnonzero(labels.flatten().is_null().to_numpy(zero_copy_only=False))
    if not len(inner_null):
        return []
    rows = pa.compute.list_parent_indices(labels).to_numpy()[inner_null]
    file, at = _first_at(place, rows)
    return [f"{file}: column 'labels' holds a null label in {len(set(rows))} row(s), {at}"]


def _item_frame(root: str, problems: list[str]) -> tuple[pd.DataFrame | None, Place]:
    """items.parquet without the image bytes: `image_ref` says where each image is, or None."""
    columns = ["item_id", "owner_id", "text", "labels", "image_path"]
    items, place = _read_table(root, schema.ITEMS, problems, columns)  # names a file that is not Parquet
    if items is None:
        return None, place
    names = schema.table_schema(root, schema.ITEMS).names
    if "image" not in names and "image_path" not in names:
        problems.append(f"{schema.ITEMS}: needs an 'image' (binary) or an 'image_path' (string) column")
    if "labels" in names:
        problems.extend(_null_label_violations(schema.read_columns(root, schema.ITEMS, ["labels"])["labels"], place))
    if "image" in names:
        # Only whether each row has bytes: the bytes themselves stay on disk.
        image = schema.read_columns(root, schema.ITEMS, ["image"]).column("image")
        items["image_ref"] = np.where(pa.compute.is_valid(image).to_numpy(zero_copy_only=False), "embedded", None)
    elif "image_path" in items:
        items["image_ref"] = items["image_path"]
    else:
        items["image_ref"] = None
    return _clean_items(items.drop(columns=["image_path"], errors="ignore"), place, problems), place


def _optional(root: str, name: str, problems: list[str], known: pd.Index) -> pd.DataFrame | None:
    if not schema.has_table(root, name):
        return None
    frame, place = _read_table(root, name, problems)
    if frame is None:
        return None
    problems.extend(_null_violations(place, frame, schema.REQUIRED[name]))
    if name in (schema.TAGS, schema.COMMENTS):
        problems.extend(_unknown_item_violations(place, frame, known))
    if name == schema.SOCIAL:
        bad = np.flatnonzero(~frame["kind"].isin(schema.SOCIAL_KINDS).to_numpy())
        if len(bad):
            file, at = _first_at(place, bad)
            problems.append(
                f"{file}: column 'kind' must be one of {schema.SOCIAL_KINDS}; "
                f"{len(bad)} row(s) are not, {at} ('{frame['kind'].iloc[bad[0]]}')"
            )
    return frame


def _without_self_links(social: pd.DataFrame, handled: dict) -> pd.DataFrame:
    """A user who befriends themself says nothing about taste: such rows are dropped and counted."""
    self_links = (social["kind"] == "friend") & (social["user_id"] == social["other_id"])
    handled["social_self_links_removed"] = int(self_links.sum())
    if self_links.any():
        log.warning("%s: %d friend rows link a user to themself: removed", schema.SOCIAL, int(self_links.sum()))
    return social[~self_links].reset_index(drop=True)


def _read_meta(root: str, problems: list[str]) -> dict:
    path = os.path.join(root, schema.META)
    if not os.path.exists(path):
        return {}
    try:
        meta = yaml.safe_load(open(path)) or {}
    except yaml.YAMLError as error:
        problems.append(f"{schema.META}: not valid YAML ({error})")
        return {}
    if not isinstance(meta, dict):
        problems.append(f"{schema.META}: must be a mapping with name, source and counts")
        return {}
    if EXTERNAL_KEY in meta and not isinstance(meta[EXTERNAL_KEY], bool):
        problems.append(f"{schema.META}: '{EXTERNAL_KEY}' must be true or false (got {meta[EXTERNAL_KEY]!r})")
    return meta


def _reference_violations(items: pd.DataFrame, place: Place, meta: dict, source: str | None) -> list[str]:
    """image_path rows that name something outside the dataset without dataset.yaml's opt-in."""
    paths = items["image_ref"]
    named = paths.notna() & (paths != "embedded") if "image_ref" in items else pd.Series(False, index=items.index)
    problems = []
    for row in np.flatnonzero(named.to_numpy()):
        reason = reference_problem(paths.iloc[row], meta.get(EXTERNAL_KEY) is True, source)
        if reason:
            file, at = place.of(int(row))
            problems.append(f"{file}: column 'image_path' at row {at} ({paths.iloc[row]!r}) {reason}")
    if len(problems) > 5:
        problems = problems[:5] + [f"{schema.ITEMS}: ... and {len(problems) - 5} more image_path rows like these"]
    return problems


def _layout_violations(root: str) -> list[str]:
    """A table stored both ways, or a required one stored neither way."""
    problems = [
        f"{name}: both {name} and a folder {schema.shard_folder(name)}/ of shards are in {root}; keep one"
        for name in schema.SCHEMAS
        if os.path.isfile(os.path.join(root, name)) and os.path.isdir(os.path.join(root, schema.shard_folder(name)))
    ]
    return problems + [
        f"{name}: required file is missing from {root} (or a folder {schema.shard_folder(name)}/ of Parquet shards)"
        for name in (schema.INTERACTIONS, schema.ITEMS)
        if not schema.has_table(root, name)
    ]


def read_dataset_lenient(root: str, source: str | None = None, scan: bool = False) -> tuple[Dataset | None, list[str]]:
    """The dataset and every contract violation found (the dataset is None when it cannot be read).
    `scan`: validate and count the interactions batch by batch (scan_interactions) instead of holding
    them; the dataset's `interactions` is then None and `scanned` holds their counts."""
    if not os.path.isdir(root):
        return None, [f"{root}: dataset directory does not exist"]
    problems = _layout_violations(root)
    if problems:
        return None, problems
    handled: dict = {}
    items, item_place = _item_frame(root, problems)
    if items is None:
        return None, problems
    known = pd.Index(items["item_id"])
    interactions, scanned = None, None
    if scan:
        scanned = scan_interactions(root, known, problems)
        handled["duplicate_interactions_removed"] = scanned["duplicates"]
    else:
        interactions, interaction_place = _read_table(root, schema.INTERACTIONS, problems)
        if interactions is None:
            return None, problems
        interactions = _clean_interactions(interactions, interaction_place, problems)
        if not interactions.empty:
            problems.extend(_unknown_item_violations(interaction_place, interactions, known))
            interactions = _without_duplicates(interactions, handled)
    tags = _optional(root, schema.TAGS, problems, known)
    social = _optional(root, schema.SOCIAL, problems, known)
    if social is not None:
        social = _without_self_links(social, handled)
    comments = _optional(root, schema.COMMENTS, problems, known)
    meta = _read_meta(root, problems)
    problems.extend(_reference_violations(items, item_place, meta, source))
    dataset = Dataset(root, interactions, items, tags, social, comments, meta, handled, source, scanned=scanned)
    return dataset, problems


def read_dataset(root: str, source: str | None = None, max_bytes: int = MAX_BYTES) -> Dataset:
    """The validated dataset at `root` (fetched from `source`, a storage URI, if any); raises DatasetError
    listing every violation."""
    dataset, problems = read_dataset_lenient(root, source)
    if problems:
        raise DatasetError(problems)
    dataset.max_bytes = max_bytes
    return dataset
