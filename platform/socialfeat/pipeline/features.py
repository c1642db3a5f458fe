"""The features stage of every method that trains an encoder: its features (and a random encoder's of the
same architecture) for every item with an image, as named feature sets with their index."""

from socialfeat.features.encoder import load_encoder
from socialfeat.features.extract import write_sets
from socialfeat.features.quality import label_precision
from socialfeat.stages import Stage, StageContext
from socialfeat.stats import significance

SET_FILES = ("feature_sets.json", "*.parquet")  # write_sets: the index and one table per set (samples too)
FEATURES_METRICS = (
    "features/items",
    "features/undecodable",
    "features/*/dim",
    "features/*/label_precision@*",
    "features/*/search_recall@*",
)


def item_images(ctx: StageContext, size: int):
    """(items with an image, a Ray Dataset of them decoded at `size`: item_id, item)."""
    # the Ray layer loads when the stage runs: a method's graph loads without Ray
    from socialfeat.distributed.inference import item_images as decoded

    dataset = ctx.dataset()
    items = dataset.items[dataset.items["image_ref"].notna()]
    return items, decoded(dataset.images, dataset.image_column, items["item_id"], size)


def _compute(ctx: StageContext, tmp: str, encoder_stage: str) -> dict:
    """Features of every item with an image: tr, te and the items the popularity filters dropped
    (a user wants every image embedded; only factorisation needs the filters)."""
    # the Ray layer loads when the stage runs: a method's graph loads without Ray
    from socialfeat.distributed.inference import extract_sets

    cfg, training = ctx.cfg.features, ctx.cfg.training
    spec, state = load_encoder(ctx.path(encoder_stage))
    items, images = item_images(ctx, spec["image_size"])
    images = images.materialize()
    labels = ctx.dataset().items.set_index("item_id")["labels"] if "labels" in ctx.dataset().items else None
    result = {"features/items": images.count(), "features/undecodable": int(len(items) - images.count())}
    states = {"cnn": state} | ({"random_cnn": None} if cfg.random_cnn else {})
    sets = extract_sets(
        images,
        spec,
        states,
        training.seed,
        batch_size=cfg.batch_size,
        concurrency=cfg.concurrency,
        use_gpu=training.use_gpu,
        progress=ctx.progress,
    )
    samples = {}
    for name, (ids, vectors) in sets.items():
        if labels is not None:
            samples |= label_precision(
                f"features/{name}", ids, vectors, labels=labels.reindex(ids).tolist(), k=cfg.neighbours
            )
        result[f"features/{name}/dim"] = int(vectors.shape[1])
    write_sets(tmp, sets)
    return result | significance.means(samples) | significance.record(tmp, samples, training.seed)


def features_stage(encoder_stage: str = "train") -> Stage:
    """The stage that embeds every item image with the encoder `encoder_stage` saved."""
    return Stage(
        "features",
        (encoder_stage, "data"),
        ("features", "training.seed"),
        lambda ctx, tmp: _compute(ctx, tmp, encoder_stage),
        outputs=SET_FILES,
        unkeyed=("training.use_gpu",),
        metrics=FEATURES_METRICS,
        images=True,
        key_metrics=("features/*/label_precision@*",),
    )
