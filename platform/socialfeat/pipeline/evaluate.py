"""The evaluate stage of every method with item features: its feature sets beside baselines (colour
histogram, pixels), the user's --features / --weights and the method's reference sets."""

import os
from collections.abc import Callable

import numpy as np
import pandas as pd

from socialfeat import artifacts
from socialfeat.errors import UserError
from socialfeat.evaluation.external import (
    aligned_features,
    check_feature_file,
    check_weights_file,
    file_fingerprint,
    weights_encoder,
)
from socialfeat.evaluation.suite import evaluate, viewers_of
from socialfeat.features.extract import read_sets, write_sets
from socialfeat.pipeline.common import view_log
from socialfeat.pipeline.features import SET_FILES, item_images
from socialfeat.report_html import evaluation_figures
from socialfeat.stages import Stage, StageContext
from socialfeat.stats import significance

# --weights is read through the training architecture and crops
WEIGHTS_READ = ("training.model", "training.tap", "training.image_size", "training.crop_size", "training.seed")


def image_baselines(ctx: StageContext, ids) -> dict[str, np.ndarray]:
    """The image baselines (colour histogram, pixels) of `ids`, each with a decodable image, in their order:
    computed by Ray tasks that read the item rows (distributed.data.item_baselines)."""
    # the Ray layer loads when the stage runs: a method's graph loads without Ray
    from socialfeat.distributed.data import item_baselines

    dataset = ctx.dataset()
    return item_baselines(dataset.images, dataset.image_column, ids)


def _weights_set(ctx: StageContext, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """--weights embedded on exactly the items the run's encoder embedded."""
    # the Ray layer loads when the stage runs: a method's graph loads without Ray
    from socialfeat.distributed.inference import extract

    spec, state = weights_encoder(ctx.cfg.evaluation.weights, ctx.cfg.training)
    _, images = item_images(ctx, spec["image_size"])
    found, vectors = extract(
        images,
        spec,
        state,
        ctx.cfg.training.seed,
        ctx.cfg.features.batch_size,
        ctx.cfg.features.concurrency,
        ctx.cfg.training.use_gpu,
    )
    order = pd.Index(found).get_indexer(ids)
    if (order < 0).any():
        raise UserError(
            f"{ctx.cfg.evaluation.weights}: {int((order < 0).sum())} images embedded by the run's "
            "encoder were not embedded with these weights"
        )
    return ids, vectors[order]


def _extra_sets(ctx: StageContext, ids: np.ndarray) -> tuple[dict, dict]:
    """Baselines and the user's weights (written to this stage), then the user's feature files."""
    computed = {name: (ids, vectors) for name, vectors in image_baselines(ctx, ids).items()}
    if ctx.cfg.evaluation.weights:
        computed["weights"] = _weights_set(ctx, ids)
    files = {name: (ids, aligned_features(path, name, ids)) for name, path in ctx.cfg.evaluation.feature_files.items()}
    return computed, files


def input_sets(ctx: StageContext, inputs: tuple[str, ...]) -> dict:
    """Every feature set the stages in `inputs` hold (features' cnn and random_cnn, rounds' cnn_r2, ...)."""
    sets = {}
    for stage in inputs:
        sets |= read_sets(ctx.path(stage))
    return sets


def _compute(ctx: StageContext, tmp: str, inputs: tuple[str, ...], references: Callable | None) -> dict:
    dataset = ctx.dataset()
    viewers = viewers_of(view_log(ctx.path("filter", "interactions.parquet"), ["user_id", "item_id"]))  # log let go
    parts = pd.read_parquet(ctx.path("split", "items.parquet")).set_index("item_id")["part"]
    sets = input_sets(ctx, inputs)
    computed, files = _extra_sets(ctx, sets["cnn"][0])  # compared on exactly the items the encoder embedded
    write_sets(tmp, computed)
    items = dataset.items.set_index("item_id")
    metrics, curves, samples = evaluate(
        sets | computed | files,
        viewers,
        parts,
        items.get("owner_id"),
        items.get("labels"),
        ctx.cfg.split.seed,
        ctx.cfg.evaluation.ranks,
        references(ctx) if references else None,
    )
    artifacts.write_json(os.path.join(tmp, "curves.json"), curves)
    return metrics | significance.record(tmp, samples, ctx.cfg.split.seed)


def _files(cfg) -> dict:
    """The feature files' and weights' fingerprints (they key the stage too); a missing or unusable file fails
    here, before any stage runs."""
    files = dict(cfg.evaluation.feature_files) | ({"weights": cfg.evaluation.weights} if cfg.evaluation.weights else {})
    fingerprints = {name: file_fingerprint(path) for name, path in files.items()}
    for name, path in cfg.evaluation.feature_files.items():
        check_feature_file(path, fingerprints[name])
    if cfg.evaluation.weights:  # a weights file is read through the training architecture and crops
        check_weights_file(cfg.evaluation.weights, cfg.training, fingerprints["weights"])
    return {"files": fingerprints}


def evaluate_stage(
    inputs: tuple[str, ...] = ("filter", "split", "features"), references: Callable | None = None
) -> Stage:
    """Evaluation after `features`; `references(ctx)` -> {name: (item_ids, vectors)} adds a method's own sets."""

    return Stage(
        "evaluate",
        inputs,
        ("evaluation.ranks", "evaluation.feature_files", "evaluation.weights", "split.seed", *WEIGHTS_READ),
        lambda ctx, tmp: _compute(ctx, tmp, inputs, references),
        outputs=("curves.json", *SET_FILES),
        unkeyed=("features.batch_size", "features.concurrency", "training.use_gpu"),
        derived=_files,
        metrics=(
            "retrieval/*/jaccard@*",
            "retrieval/*/owner_viewed@*",
            "retrieval/*/search_recall@*",
            "probe/*/accuracy",
            "probe/*/map",
        ),
        images=True,
        report=evaluation_figures,
        key_metrics=("retrieval/*/jaccard@10", "retrieval/*/owner_viewed@*", "probe/*"),
    )
