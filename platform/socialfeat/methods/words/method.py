"""Weakly supervised word prediction (Joulin et al., ECCV 2016) as a graph of stages."""

from socialfeat.methods.words import stages
from socialfeat.methods.words.config import Config
from socialfeat.methods.words.report import frequency_figures, words_figures
from socialfeat.pipeline.coldstart import coldstart_stage
from socialfeat.pipeline.common import DATA, FILTER, SPLIT
from socialfeat.pipeline.evaluate import evaluate_stage
from socialfeat.pipeline.factorization import FACTORIZATION, SAMPLING
from socialfeat.pipeline.features import features_stage
from socialfeat.pipeline.train import TRAIN_FILES, train_metrics
from socialfeat.report_html import training_figures
from socialfeat.stages import Method, Stage
from socialfeat.training.multilabel import TASKS, make_task

METHOD = Method(
    name="words",
    description="weakly supervised word prediction: item text, tags and comments -> dictionary -> CNN -> features",
    stages=(
        DATA,
        FILTER,
        SPLIT,
        Stage(
            "vocabulary",
            ("split", "data"),
            ("vocabulary",),
            stages.vocabulary,
            outputs=("vocabulary.parquet", "counts.parquet", "item_words.parquet"),
            metrics=(
                "vocabulary/size",
                "vocabulary/capped",
                "vocabulary/coverage",
                "vocabulary/words_per_item",
                "vocabulary/items_without_words",
            ),
            report=frequency_figures,
            key_metrics=("vocabulary/size", "vocabulary/words_per_item"),
        ),
        Stage(
            "train",
            ("vocabulary", "data"),
            ("training", "words"),
            stages.train,
            outputs=TRAIN_FILES,
            images=True,
            metrics=train_metrics("precision_at_10"),
            trains=True,
            key_metrics=("train/holdout_precision_at_10",),
            report=training_figures,
        ),
        Stage(
            "words",
            ("vocabulary", "train", "data"),
            ("features", "split.seed", "training.seed", "training.use_gpu"),
            stages.predictions,
            outputs=("predicted.parquet", "nearest_words.json", "samples.parquet?"),
            images=True,
            metrics=(
                "words/te_items",
                "words/precision@*",
                "words/recall@*",
                "words/*/precision@*",
                "words/*/recall@*",
                "words/translation_pairs",
                "words/translation_*@*",
            ),
            report=words_figures,
            key_metrics=("words/*precision@10", "words/*recall@10"),
        ),
        features_stage("train"),
        evaluate_stage(("filter", "split", "features")),
        SAMPLING,
        FACTORIZATION,
        coldstart_stage(),
    ),
    config=Config,
    tasks=lambda cfg: {name: make_task(name, cfg.vocabulary.size, cfg.words.negatives) for name in TASKS},
    task=lambda cfg: make_task(cfg.words.loss, cfg.vocabulary.size, cfg.words.negatives),
)
