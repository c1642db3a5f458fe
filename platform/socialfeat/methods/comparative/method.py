"""Comparative deep learning for image recommendation (Lei et al., CVPR 2016) as a graph of stages."""

from socialfeat.clustering.kmeans import KMEANS_METRICS
from socialfeat.methods.comparative import stages
from socialfeat.methods.comparative.config import Config
from socialfeat.methods.comparative.recommend import recommend
from socialfeat.methods.comparative.report import curve_figures
from socialfeat.methods.comparative.stages import USERS_KEYS
from socialfeat.methods.comparative.tasks import MODELS, make_task, sizes_of
from socialfeat.methods.comparative.users import users, words_run_key
from socialfeat.pipeline.coldstart import coldstart_stage
from socialfeat.pipeline.common import DATA, FILTER, SPLIT
from socialfeat.pipeline.evaluate import evaluate_stage
from socialfeat.pipeline.factorization import FACTORIZATION, SAMPLING
from socialfeat.pipeline.features import features_stage
from socialfeat.pipeline.train import TRAIN_FILES, train_metrics
from socialfeat.report_html import training_figures
from socialfeat.stages import Method, Stage


def _keys(keys: set) -> tuple[str, ...]:
    return tuple(f"comparative.{key}" for key in sorted(keys | {"seed"}))


LIKES_FILES = ("likes.parquet", "users.parquet", "items.parquet", "tags.parquet", "item_tags.parquet")
LIKES_FILES += ("user_tags.parquet", "candidates.parquet", "friends.npz", "members.npz")


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
            _keys(stages.LIKES_KEYS),
            stages.likes,
            outputs=LIKES_FILES,
            metrics=(
                "likes/users*",
                "likes/items",
                "likes/likes",
                "likes/tags",
                "likes/eligible_users",
                "likes/too_few_likes",
                "likes/without_image",
                "likes/test_users*",
                "likes/small_candidate_pool",
                "likes/tiers_enumerated",
                "likes/candidates_tier*",
                "social/links",
                "social/unknown_users",
            ),
            key_metrics=("likes/test_users_ranked", "likes/users_with_circle", "likes/candidates_tier*"),
        ),
        Stage(
            "users",
            ("likes",),
            _keys(USERS_KEYS),
            users,
            outputs=("bags.npy", "tag_clusters.parquet", "bags.json"),
            derived=words_run_key,
            metrics=(
                "users/tag_clusters",
                "users/tags_embedded",
                "users/tags_without_embedding",
                "users/clusters_per_user",
                "users/empty_bags",
                *(name.replace("kmeans/", "users/") for name in KMEANS_METRICS),  # the tag clustering's
            ),
            key_metrics=("users/empty_bags",),
        ),
        Stage(
            "triplets",
            ("likes",),
            _keys(stages.TRIPLETS_KEYS),
            stages.triplets,
            outputs=("triplets.parquet",),
            metrics=("triplets/triplets", "triplets/users", "triplets/*_negatives", "triplets/pools_enumerated"),
            key_metrics=("triplets/*_negatives",),
        ),
        Stage(
            "train",
            ("users", "triplets", "likes", "data"),
            ("training", *_keys(stages.MODEL_KEYS)),
            stages.train,
            outputs=TRAIN_FILES,
            images=True,
            metrics=train_metrics("closer", "accuracy"),
            trains=True,
            key_metrics=("train/holdout_*",),
            report=training_figures,
        ),
        features_stage("train"),
        Stage(
            "recommend",
            ("likes", "users", "train", "features", "data"),
            ("comparative", "training", "features"),
            recommend,
            outputs=("by_user.parquet", "curves.parquet", "samples.parquet?"),
            images=True,
            metrics=(
                "comparative/test_users",
                "comparative/users_with_undecodable_candidates",
                "comparative/precision@*",
                "comparative/recall@*",
                "comparative/*/precision@*",
                "comparative/*/recall@*",
            ),
            report=curve_figures,
            key_metrics=(  # the model first, then the baselines a reader holds it against
                "comparative/precision@20",
                "comparative/popularity/precision@20",
                "comparative/borda_cnn/precision@20",
                "comparative/*/precision@*",
                "comparative/*/recall@20",
            ),
        ),
        evaluate_stage(("filter", "split", "features")),
        SAMPLING,
        FACTORIZATION,
        coldstart_stage(),
    ),
    config=Config,
    tasks=lambda cfg: {name: make_task(name, sizes_of(cfg.comparative)) for name in MODELS},
    task=lambda cfg: make_task(cfg.comparative.model, sizes_of(cfg.comparative)),
)
