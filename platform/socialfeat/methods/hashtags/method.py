"""User-specific hashtag prediction (Veit et al., CVPR 2018) as a graph of stages."""

from socialfeat.methods.hashtags import stages
from socialfeat.methods.hashtags.config import Config
from socialfeat.methods.hashtags.report import by_user_figures
from socialfeat.methods.hashtags.tasks import MODELS, make_task, sizes_of
from socialfeat.pipeline.coldstart import coldstart_stage
from socialfeat.pipeline.common import DATA, FILTER, SPLIT
from socialfeat.pipeline.evaluate import evaluate_stage
from socialfeat.pipeline.factorization import FACTORIZATION, SAMPLING
from socialfeat.pipeline.features import features_stage
from socialfeat.pipeline.train import TRAIN_FILES, train_metrics
from socialfeat.report_html import training_figures
from socialfeat.stages import Method, Stage

# the contract's tasks: real runs size theirs from the posts stage (hashtags and users kept)
EXAMPLE_TAGS, EXAMPLE_USERS = 40, 30


METHOD = Method(
    name="hashtags",
    description="user-specific hashtag prediction: who tagged which image -> posts -> (image, user, hashtag) models",
    stages=(
        DATA,
        FILTER,
        SPLIT,
        Stage(
            "posts",
            ("data",),
            tuple(f"hashtags.{key}" for key in sorted(stages.POSTS_KEYS)),
            stages.posts,
            outputs=("posts.parquet", "users.parquet", "vocabulary.parquet"),
            metrics=(
                "posts/posts",
                "posts/hashtags",
                "posts/users",
                "posts/train",
                "posts/val",
                "posts/test",
                "posts/spam_*",
                "posts/tags_per_post",
                "posts/held_out_user_unseen",
                "posts/without_*",
            ),
            key_metrics=("posts/hashtags", "posts/users", "posts/test"),
        ),
        Stage(
            "train",
            ("posts", "data"),
            ("training", "hashtags"),
            stages.train,
            outputs=TRAIN_FILES,
            images=True,
            metrics=train_metrics("ranked_above", "precision_at_10", "cosine"),
            trains=True,
            key_metrics=("train/holdout_*",),
            report=training_figures,
        ),
        Stage(
            "tagging",
            ("posts", "train", "data"),
            ("features", "split.seed", "hashtags", "training"),
            stages.tagging,
            outputs=("by_user.parquet", "samples.parquet?"),
            images=True,
            metrics=(
                "hashtags/test_posts",
                "hashtags/retrieval_queries",
                "hashtags/accuracy@*",
                "hashtags/*/accuracy@*",
                "hashtags/*/precision@*",
            ),
            report=by_user_figures,
            key_metrics=("hashtags/*/accuracy@*",),
        ),
        features_stage("train"),
        evaluate_stage(("filter", "split", "features")),
        SAMPLING,
        FACTORIZATION,
        coldstart_stage(),
    ),
    config=Config,
    tasks=lambda cfg: {name: make_task(name, EXAMPLE_TAGS, EXAMPLE_USERS, sizes_of(cfg.hashtags)) for name in MODELS},
    task=lambda cfg: make_task(cfg.hashtags.model, EXAMPLE_TAGS, EXAMPLE_USERS, sizes_of(cfg.hashtags)),
)
