"""A deterministic synthetic social-media dataset with planted styles, tastes, vocabularies and friends.

What is planted (and kept as ground truth so tests can measure recovery):
- every item has one of S hidden styles = (shape, fill texture); colours, position, scale and noise
  are drawn from the same distributions for every style, so mean colour cannot separate styles;
- users like 1-3 styles; a view picks a style from the user's taste (or, rarely, any style) and
  then an item of that style by a Zipf popularity, giving real logs' long tail;
- each item's owner is, mostly, a user whose favourite style is the item's;
- each style has concept words; each user names a concept by a personal synonym, some users in
  another language (accented words), and tags mix in noise and very common words;
- some owners post their item with hashtags in their own words (owner_post_probability);
- friends and groups link users of the same favourite style.
"""

import logging
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image, ImageDraw
from tqdm import tqdm

from socialfeat.artifacts import atomic_dir
from socialfeat.config import SynthConfig
from socialfeat.data import schema
from socialfeat.data.images import encode_jpeg

log = logging.getLogger(__name__)

SHAPES = ("disc", "square", "triangle", "cross")
TEXTURES = ("solid", "hstripes", "vstripes", "checker", "dots")
COMMON_WORDS = ("the", "a", "my", "and", "of", "this", "with", "new", "photo", "look", "so", "in")
PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
        [170, 110, 40],
        [128, 0, 0],
        [0, 0, 128],
        [128, 128, 128],
        [255, 255, 255],
        [20, 20, 20],
    ],
    dtype=np.float32,
)
WORD_VARIANTS = 3  # per concept: a canonical word and two synonyms; then one foreign word


def style_names(n_styles: int) -> list[tuple[str, str]]:
    """(shape, texture) of each style; consecutive styles differ in shape first."""
    pairs = [(shape, texture) for texture in TEXTURES for shape in SHAPES]
    return pairs[:n_styles]


def _pseudo_words(rng: np.random.Generator, count: int, accented: bool = False) -> list[str]:
    consonants, vowels = list("bdfgklmnprstvz"), list("áéíóú" if accented else "aeiou")
    words: set[str] = set()
    while len(words) < count:
        syllables = rng.integers(2, 4)
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables)))
    # a set's order changes with PYTHONHASHSEED: sort it before the seeded shuffle (one draw per word, so the
    # stream that later draws take is unchanged)
    ordered = sorted(words)
    return [ordered[i] for i in np.argsort(rng.random(len(ordered)), kind="stable")]


def _texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean HxW pattern choosing between the shape's two colours."""
    y, x = np.mgrid[0:size, 0:size]
    period = int(rng.integers(max(3, size // 16), max(5, size // 6)))
    phase = int(rng.integers(0, period))
    if kind == "solid":
        return np.ones((size, size), bool)
    if kind == "hstripes":
        return ((y + phase) // period) % 2 == 0
    if kind == "vstripes":
        return ((x + phase) // period) % 2 == 0
    if kind == "checker":
        return (((x + phase) // period) + ((y + phase) // period)) % 2 == 0
    centre = period // 2
    return ((x + phase) % period - centre) ** 2 + ((y + phase) % period - centre) ** 2 > (period / 3.2) ** 2


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    extent = rng.uniform(0.45, 0.85) * size
    cx, cy = rng.uniform(extent / 2, size - extent / 2, 2)
    box = (cx - extent / 2, cy - extent / 2, cx + extent / 2, cy + extent / 2)
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "disc":
        draw.ellipse(box, fill=255)
    elif shape == "square":
        draw.rectangle(box, fill=255)
    elif shape == "triangle":
        draw.polygon([(cx, box[1]), (box[0], box[3]), (box[2], box[3])], fill=255)
    else:
        bar = extent / 3.2
        draw.rectangle((box[0], cy - bar / 2, box[2], cy + bar / 2), fill=255)
        draw.rectangle((cx - bar / 2, box[1], cx + bar / 2, box[3]), fill=255)
    return np.asarray(mask) > 127


def draw_item(shape: str, texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One HxWx3 uint8 image of a style: a textured shape on a noisy background."""
    colours = PALETTE[rng.choice(len(PALETTE), 3, replace=False)]
    background = np.broadcast_to(colours[0], (size, size, 3))
    fill = np.where(_texture(texture, size, rng)[..., None], colours[1], colours[2])
    pixels = np.where(_shape_mask(shape, size, rng)[..., None], fill, background)
    pixels = pixels + rng.normal(0, 12, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _tastes(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """users x styles taste weights: 1-3 liked styles per user, Dirichlet weights."""
    tastes = np.zeros((cfg.users, cfg.styles))
    liked_counts = 1 + rng.binomial(min(2, cfg.styles - 1), 0.3, cfg.users)
    for user, count in enumerate(liked_counts):
        liked = rng.choice(cfg.styles, count, replace=False)
        tastes[user, liked] = rng.dirichlet(np.full(count, 2.0))
    return tastes


STYLE_BLOCK = 1 << 22  # views whose style is drawn at a time: a views x styles array a block, not a log


def _styles(tastes: np.ndarray, users: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Each view's style: the user's taste CDF against the view's draw, a block of views at a time."""
    cumulative = np.cumsum(tastes, axis=1)
    styles = np.empty(len(users), np.int64)
    for start in range(0, len(users), STYLE_BLOCK):
        block = slice(start, start + STYLE_BLOCK)
        styles[block] = (cumulative[users[block]] < draws[block, None]).sum(axis=1)
    return styles.clip(0, tastes.shape[1] - 1)


def _first_of_each(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """The rows that first name each (user, item) pair, in order (drop_duplicates' rows, in 24 bytes a view)."""
    _, first = np.unique(users.astype(np.int64) * n_items + items, return_index=True)
    return np.sort(first)


def _views(cfg: SynthConfig, tastes: np.ndarray, item_style: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """(user, item) view pairs: style from taste, then an item of that style by Zipf popularity."""
    popularity = (rng.permutation(cfg.items) + 10.0) ** -cfg.zipf_exponent
    counts = np.clip(
        rng.lognormal(np.log(cfg.mean_views) - 0.32, 0.8, cfg.users), cfg.min_views, cfg.items // 2
    ).astype(np.int64)
    users = np.repeat(np.arange(cfg.users, dtype=np.int32), counts)
    styles = _styles(tastes, users, rng.random(len(users)))
    explore = rng.random(len(users)) < cfg.explore
    styles[explore] = rng.integers(0, cfg.styles, explore.sum())
    order = np.lexsort((np.arange(cfg.items), item_style))  # items grouped by style
    grouped_cdf = np.cumsum(popularity[order])
    starts = np.searchsorted(item_style[order], np.arange(cfg.styles))
    ends = np.searchsorted(item_style[order], np.arange(cfg.styles), side="right")
    base = np.where(starts > 0, grouped_cdf[np.maximum(starts - 1, 0)], 0.0)
    span = grouped_cdf[ends - 1] - base
    targets = base[styles] + rng.random(len(users)) * span[styles]
    positions = np.minimum(np.searchsorted(grouped_cdf, targets), ends[styles] - 1)
    del targets, styles
    items = order[positions].astype(np.int32)
    kept = _first_of_each(users, items, cfg.items)
    return pd.DataFrame({"user": users[kept], "item": items[kept]})


def _owners(cfg: SynthConfig, tastes: np.ndarray, item_style: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    favourite = tastes.argmax(axis=1)
    owners = rng.integers(0, cfg.users, cfg.items)
    for style in range(cfg.styles):
        fans = np.flatnonzero(favourite == style)
        mine = np.flatnonzero((item_style == style) & (rng.random(cfg.items) < cfg.owner_affinity))
        if len(fans):
            owners[mine] = rng.choice(fans, len(mine))
    return owners


def _vocabulary(cfg: SynthConfig, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """concepts x (variants + foreign) words, and the noise words."""
    n_concepts = cfg.styles * cfg.concepts_per_style
    plain = _pseudo_words(rng, n_concepts * WORD_VARIANTS + cfg.noise_words)
    foreign = _pseudo_words(rng, n_concepts, accented=True)
    words = np.array(plain[: n_concepts * WORD_VARIANTS], dtype=object).reshape(n_concepts, WORD_VARIANTS)
    return np.column_stack([words, np.array(foreign, dtype=object)]), plain[n_concepts * WORD_VARIANTS :]


def _user_variants(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """users x concepts: which word each user says for each concept (last column = foreign)."""
    n_concepts = cfg.styles * cfg.concepts_per_style
    variants = rng.choice(WORD_VARIANTS, (cfg.users, n_concepts), p=[0.5, 0.25, 0.25])
    variants[rng.random(cfg.users) < cfg.foreign_fraction] = WORD_VARIANTS
    return variants


def _concept_of(style: np.ndarray, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    return style * cfg.concepts_per_style + rng.integers(0, cfg.concepts_per_style, len(style))


def _item_texts(cfg, item_style, owners, words, variants, noise, rng) -> list[str]:
    texts, noise = [], np.array(noise, dtype=object)
    for item in range(cfg.items):
        concepts = _concept_of(np.repeat(item_style[item], 2), cfg, rng)
        tokens = [words[c, variants[owners[item], c]] for c in concepts]
        tokens += list(rng.choice(noise, rng.integers(1, cfg.noise_words_per_text + 1))) + list(
            rng.choice(COMMON_WORDS, rng.integers(1, 4))
        )
        rng.shuffle(tokens)
        tokens[0] = tokens[0].capitalize()
        texts.append(" ".join(tokens) + f" #{rng.integers(1, 999)}" + rng.choice(["!", ".", "?!", ""]))
    return texts


def _tags(cfg, views, item_style, words, variants, noise, times, rng) -> pd.DataFrame:
    tagged = views[rng.random(len(views)) < cfg.tag_probability]
    users, items = tagged["user"].to_numpy(), tagged["item"].to_numpy()
    concepts = _concept_of(item_style[items], cfg, rng)
    tags = words[concepts, variants[users, concepts]]
    is_noise = rng.random(len(tagged)) < cfg.noise_tag_probability
    tags[is_noise] = rng.choice(np.array(noise, dtype=object), is_noise.sum())
    return pd.DataFrame(
        {
            "user_id": _ids("u", users),
            "item_id": _ids("i", items),
            "tag": tags.astype(str),
            "timestamp": times[tagged.index.to_numpy()] + rng.integers(1, 600, len(tagged)),
        }
    )


def _comments(cfg, views, item_style, words, variants, times) -> pd.DataFrame:
    """Some viewers comment in their own words for the item's concept, with common words around it. A
    stream of its own, so adding comments changed nothing else the generator draws."""
    rng = np.random.default_rng([cfg.seed, 1])
    commented = views[rng.random(len(views)) < cfg.comment_probability]
    users, items = commented["user"].to_numpy(), commented["item"].to_numpy()
    concepts = _concept_of(item_style[items], cfg, rng)
    said = words[concepts, variants[users, concepts]]
    fillers = rng.choice(np.array(COMMON_WORDS, dtype=object), (len(commented), 2))
    texts = [f"{a} {word} {b}!" for a, word, b in zip(fillers[:, 0], said, fillers[:, 1])]
    return pd.DataFrame(
        {
            "user_id": _ids("u", users),
            "item_id": _ids("i", items),
            "text": texts,
            "timestamp": times[commented.index.to_numpy()] + rng.integers(1, 600, len(commented)),
        }
    )


def _owner_posts(cfg, item_style, owners, words, variants, noise) -> pd.DataFrame:
    """Some owners post their item with hashtags (an uploader's post): two of the style's concepts in the
    owner's words, sometimes a noise tag. A stream of its own, so the rest of the dataset is unchanged."""
    rng = np.random.default_rng([cfg.seed, 2])
    posted = np.flatnonzero(rng.random(cfg.items) < cfg.owner_post_probability)
    items = np.repeat(posted, 2)
    concepts = _concept_of(item_style[items], cfg, rng)
    tags = words[concepts, variants[owners[items], concepts]]
    noisy = posted[rng.random(len(posted)) < cfg.noise_tag_probability]
    items = np.concatenate([items, noisy])
    tags = np.concatenate([tags, rng.choice(np.array(noise, dtype=object), len(noisy))])
    times = 1_600_000_000 + rng.integers(0, 365 * 86400, cfg.items)
    frame = pd.DataFrame(
        {"user_id": _ids("u", owners[items]), "item_id": _ids("i", items), "tag": tags.astype(str)}
    ).assign(timestamp=times[items])
    return frame.drop_duplicates(["user_id", "item_id", "tag"]).reset_index(drop=True)


def _social(cfg: SynthConfig, tastes: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Friends (mostly sharing the favourite style) and groups (one per style), vectorised."""
    favourite = tastes.argmax(axis=1)
    users = np.repeat(np.arange(cfg.users), cfg.friends_per_user)
    friends = rng.integers(0, cfg.users, len(users))
    same_taste = rng.random(len(users)) < cfg.friend_affinity
    for style in range(cfg.styles):
        fans = np.flatnonzero(favourite == style)
        pick = same_taste & (favourite[users] == style)
        friends[pick] = fans[rng.integers(0, len(fans), pick.sum())]
    friends_frame = pd.DataFrame({"user": users, "other_id": _ids("u", friends), "kind": "friend"})[users != friends]
    extra = np.flatnonzero(rng.random(cfg.users) < 0.3)
    groups = pd.DataFrame(
        {
            "user": np.concatenate([np.arange(cfg.users), extra]),
            "other_id": np.char.add(
                "g", np.char.zfill(np.concatenate([favourite, rng.integers(0, cfg.styles, len(extra))]).astype(str), 3)
            ),
            "kind": "group",
        }
    )
    frame = pd.concat([friends_frame, groups], ignore_index=True)
    return (
        pd.DataFrame(
            {"user_id": _ids("u", frame["user"].to_numpy()), "other_id": frame["other_id"], "kind": frame["kind"]}
        )
        .drop_duplicates()
        .reset_index(drop=True)
    )


def _ids(prefix: str, indices: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(indices.astype(str), 6))


def _images(cfg: SynthConfig, item_style: np.ndarray, progress: bool) -> list[bytes]:
    styles = style_names(cfg.styles)
    rng = np.random.default_rng([cfg.seed, 1])
    return [
        encode_jpeg(draw_item(*styles[s], cfg.image_size, rng))
        for s in tqdm(item_style, desc="drawing images", unit="img", disable=not progress)
    ]


def generate(cfg: SynthConfig, out: str, progress: bool = False) -> dict:
    """Write the dataset to `out` (atomically) and return its counts."""
    rng = np.random.default_rng(cfg.seed)
    item_style = rng.integers(0, cfg.styles, cfg.items)
    tastes = _tastes(cfg, rng)
    views = _views(cfg, tastes, item_style, rng)
    owners = _owners(cfg, tastes, item_style, rng)
    words, noise = _vocabulary(cfg, rng)
    variants = _user_variants(cfg, rng)
    times = 1_600_000_000 + np.sort(rng.integers(0, 365 * 86400, len(views)))
    times = times[rng.permutation(len(views))]
    texts = _item_texts(cfg, item_style, owners, words, variants, noise, rng)
    tags = _tags(cfg, views, item_style, words, variants, noise, times, rng)
    if cfg.owner_post_probability > 0:
        owner_posts = _owner_posts(cfg, item_style, owners, words, variants, noise)
        tags = pd.concat([tags, owner_posts], ignore_index=True)
    social = _social(cfg, tastes, rng)
    comments = _comments(cfg, views, item_style, words, variants, times)
    images = _images(cfg, item_style, progress)
    items = pd.DataFrame(
        {
            "item_id": _ids("i", np.arange(cfg.items)),
            "image": images,
            "owner_id": _ids("u", owners),
            "text": texts,
            "labels": [[f"style_{s:02d}"] for s in item_style],
        }
    )
    counts = {
        "users": cfg.users,
        "items": cfg.items,
        "interactions": len(views),
        "tags": len(tags),
        "social_links": len(social),
        "comments": len(comments),
    }
    meta = {
        "name": "synthetic",
        "source": "socialfeat data synth",
        "counts": counts,
        "generator": cfg.model_dump(),
        "planted": {
            "styles": [f"{shape}/{texture}" for shape, texture in style_names(cfg.styles)],
            "concept_words": words[:, 0].tolist(),
            # each concept's foreign word and the plain words it translates to (the words method's Table 5)
            "translations": [[row[-1], list(row[:-1])] for row in words.tolist()],
        },
    }
    with atomic_dir(out) as tmp:
        write_contract(tmp, None, items, tags, social, meta, comments, shards=cfg.shards)
        _write_views(tmp, views, times, cfg.shards)
    log.info("synthetic dataset: %s", counts)
    return counts


WRITE_ROWS = 1 << 20  # views given string ids and written at a time


def _write_views(root: str, views: pd.DataFrame, times: np.ndarray, shards: int) -> None:
    """The interactions table, its string ids built a row group at a time (as one array they took ~60 bytes a
    view, with the conversions' copies several times that)."""
    users, items = views["user"].to_numpy(), views["item"].to_numpy()
    if shards == 1:
        paths = [os.path.join(root, schema.INTERACTIONS)]
    else:
        os.makedirs(os.path.join(root, schema.shard_folder(schema.INTERACTIONS)))
        paths = [
            os.path.join(root, schema.shard_folder(schema.INTERACTIONS), f"part-{s:05d}.parquet") for s in range(shards)
        ]
    bounds = np.linspace(0, len(views), len(paths) + 1).round().astype(int)
    for path, start, stop in zip(paths, bounds[:-1], bounds[1:]):
        with pq.ParquetWriter(path, schema.INTERACTIONS_SCHEMA) as writer:
            for first in range(start, max(stop, start + 1), WRITE_ROWS):
                rows = slice(first, min(stop, first + WRITE_ROWS))
                columns = [
                    _ids("u", users[rows]),
                    _ids("i", items[rows]),
                    np.ones(len(users[rows]), np.float32),
                    times[rows],
                ]
                writer.write_table(pa.table(columns, schema=schema.INTERACTIONS_SCHEMA))


def _leaf_paths(name: str, kind: pa.DataType) -> list[str]:
    """The Parquet column paths of an Arrow field (a list's values are `name.list.element`)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _leaf_paths(f"{name}.list.element", kind.value_type)
    if pa.types.is_struct(kind):
        return [path for child in kind for path in _leaf_paths(f"{name}.{child.name}", child.type)]
    return [name]


def _write_file(table: pa.Table, path: str, row_group_size: int | None) -> None:
    # Image bytes are JPEG or PNG, compressed already: Snappy saves nothing on them and costs every read
    # (0.65 s against 0.10 s for 325 MB of posters, a twentieth of decoding them), so they are stored plain.
    paths = [leaf for field in table.schema for leaf in _leaf_paths(field.name, field.type)]
    codecs = {leaf: "none" if leaf == "image" else "snappy" for leaf in paths}
    dictionary = [leaf for leaf in paths if leaf != "image"]
    pq.write_table(table, path, row_group_size=row_group_size, compression=codecs, use_dictionary=dictionary)


def write_table(root: str, name: str, table: pa.Table, shards: int = 1) -> None:
    """One contract table as one Parquet file, or `shards` files of consecutive rows in the table's folder
    (items/part-00000.parquet ...); the items in 2,048-row groups, their image bytes uncompressed."""
    row_group_size = 2048 if name == schema.ITEMS else None
    if shards == 1:
        _write_file(table, os.path.join(root, name), row_group_size)
        return
    folder = os.path.join(root, schema.shard_folder(name))
    os.makedirs(folder)
    bounds = np.linspace(0, len(table), shards + 1).round().astype(int)
    for shard, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        _write_file(table.slice(start, stop - start), os.path.join(folder, f"part-{shard:05d}.parquet"), row_group_size)


def write_contract(
    root: str, interactions, items, tags=None, social=None, meta=None, comments=None, shards: int = 1
) -> None:
    """Write DataFrames as the contract's Parquet files (with the contract's schemas), each table as one file
    or `shards` shards, and dataset.yaml."""
    frames = {
        schema.INTERACTIONS: interactions,
        schema.ITEMS: items,
        schema.TAGS: tags,
        schema.SOCIAL: social,
        schema.COMMENTS: comments,
    }
    for name, frame in frames.items():
        if frame is None:
            continue
        arrow_schema = pa.schema([f for f in schema.SCHEMAS[name] if f.name in frame.columns])
        table = pa.Table.from_pandas(frame[arrow_schema.names], schema=arrow_schema, preserve_index=False)
        write_table(root, name, table, shards)
    with open(os.path.join(root, schema.META), "w") as handle:
        yaml.safe_dump(meta or {}, handle, sort_keys=False, allow_unicode=True)
