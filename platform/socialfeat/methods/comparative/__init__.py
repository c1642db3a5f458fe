"""Comparative deep learning for image recommendation (Lei et al., CVPR 2016) as a graph of stages."""

from socialfeat.evaluation.stage import coldstart_stage, evaluate_stage
from socialfeat.features.stage import features_stage
from socialfeat.methods.common import DATA, FILTER, SPLIT
from socialfeat.methods.comparative import stages
from socialfeat.methods.comparative.recommend import recommend
from socialfeat.methods.comparative.report import curve_figures
from socialfeat.methods.comparative.tasks import MODELS, make_task, sizes_of
from socialfeat.methods.comparative.users import users, users_config
from socialfeat.report_html import training_figures
from socialfeat.stages import Method, Stage


def _keys(cfg, keys: set) -> dict:
    return cfg.comparative.model_dump(include=keys | {"seed"})


def _train_config(cfg) -> dict:
    return {"training": cfg.training.model_dump(), "comparative": cfg.comparative.model_dump(include=stages.MODEL_KEYS)}


METHOD = Method(
    name="comparative",
    description="comparative deep learning: likes, friends and tags -> users as tag-cluster bags -> triplets -> "
    "images and users in one space, recommendations by distance",
    stages=(
        DATA,
        FILTER,
        SPLIT,
        Stage(
            "likes",
            ("filter", "data"),
            lambda cfg: _keys(cfg, stages.LIKES_KEYS),
            stages.likes,
            metrics=("likes", "social"),
            key_metrics=("likes/test_users_ranked", "likes/users_with_circle", "likes/candidates_tier*"),
        ),
        Stage("users", ("likes",), users_config, users, metrics=("users",), key_metrics=("users/empty_bags",)),
        Stage(
            "triplets",
            ("likes",),
            lambda cfg: _keys(cfg, stages.TRIPLETS_KEYS),
            stages.triplets,
            metrics=("triplets",),
            key_metrics=("triplets/*_negatives",),
        ),
        Stage(
            "train",
            ("users", "triplets", "likes", "data"),
            _train_config,
            stages.train,
            metrics=("train",),
            trains=True,
            key_metrics=("train/holdout_*",),
            report=training_figures,
        ),
        features_stage("train"),
        Stage(
            "recommend",
            ("likes", "users", "train", "features", "data"),
            lambda cfg: {},
            recommend,
            metrics=("comparative",),
            report=curve_figures,
            key_metrics=("comparative/*/precision@*", "comparative/*/recall@20"),
        ),
        evaluate_stage(("filter", "split", "features")),
        coldstart_stage(),
    ),
    tasks=lambda cfg: {name: make_task(name, sizes_of(cfg.comparative)) for name in MODELS},
    task=lambda cfg: make_task(cfg.comparative.model, sizes_of(cfg.comparative)),
)
