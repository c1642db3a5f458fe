"""Collaborative feature learning (Fang et al., CVPR 2015) as a graph of stages."""

import dataclasses

from socialfeat.clustering.kmeans import KMEANS_METRICS
from socialfeat.methods.cfl import rounds, stages
from socialfeat.methods.cfl.config import Config
from socialfeat.methods.cfl.report import cluster_figures, factorization_figures
from socialfeat.methods.cfl.tasks import LatentTask, PseudoClassTask, make_task
from socialfeat.pipeline.coldstart import coldstart_stage
from socialfeat.pipeline.common import DATA, FILTER, SPLIT
from socialfeat.pipeline.evaluate import evaluate_stage
from socialfeat.pipeline.factorization import FACTORIZATION, SAMPLING
from socialfeat.pipeline.features import SET_FILES, features_stage
from socialfeat.pipeline.train import TRAIN_FILES, train_metrics
from socialfeat.report_html import training_figures
from socialfeat.stages import Method, Rounds, Stage


def tasks(cfg) -> dict:
    """Every CNN objective of the method, sized by the config (K pseudo classes, d latent dimensions)."""
    return {
        "pseudo_class": PseudoClassTask(cfg.clustering.k),
        "latent_cosine": LatentTask(cfg.factorization.dim),
        "latent_l2": LatentTask(cfg.factorization.dim, "l2"),
    }


TASK_METRICS = ("top1", "top5", "cosine")  # the epoch metrics of the pseudo-class and latent tasks
ROUND_METRICS = (
    *train_metrics(*TASK_METRICS, prefix="rounds/r*"),
    "rounds/r*/nmi",
    "rounds/r*/nmi_previous",
    "rounds/r*/label_precision@*",
    "rounds/r*/search_recall@*",
    "rounds/last/label_precision@*",
)
KMEANS_READS = tuple(f"clustering.{key}" for key in ("k", "iterations", "normalize", "whiten", "seed"))
ROUND = Rounds(
    "round",
    count="clustering.rounds",
    first=2,
    inputs=("features", "train", "kmeans", "factorization", "data"),
    reads=(
        *KMEANS_READS,
        "clustering.feature_weight",
        "clustering.factor_weight",
        "clustering.round_epochs",
        "training",
        "features",
    ),
    compute=rounds.compute_round,
    outputs=("pseudo_classes.parquet", *TRAIN_FILES, *SET_FILES),
    key_metrics=lambda number: (f"rounds/r{number}/label_precision@*", f"rounds/r{number}/nmi_previous"),
    trains=True,
    images=True,
)

METHOD = Method(
    name="cfl",
    description="collaborative feature learning: view log -> matrix factorisation -> k-means pseudo classes -> CNN",
    stages=(
        DATA,
        FILTER,
        SPLIT,
        SAMPLING,
        dataclasses.replace(FACTORIZATION, report=factorization_figures),
        Stage(
            "kmeans",
            ("factorization",),
            KMEANS_READS,
            stages.clusters,
            outputs=("pseudo_classes.parquet", "centroids.npy"),
            metrics=(*KMEANS_METRICS, "kmeans/nmi"),
            key_metrics=("kmeans/nmi",),
            report=cluster_figures,
        ),
        Stage(
            "train",
            ("kmeans", "factorization", "data"),
            ("training",),
            stages.train,
            outputs=TRAIN_FILES,
            images=True,
            metrics=train_metrics(*TASK_METRICS),
            trains=True,
            key_metrics=("train/holdout_top1",),
            report=training_figures,
        ),
        features_stage("train"),
        Stage(
            "rounds",
            ("features",),
            ("clustering.rounds", "features.neighbours", "training.objective"),
            rounds.rounds,
            outputs=SET_FILES,
            derived=rounds.check_rounds,
            metrics=ROUND_METRICS,
            key_metrics=("rounds/*/label_precision@*",),
            rounds=ROUND,
        ),
        evaluate_stage(("filter", "split", "features", "rounds", "factorization"), references=stages.latent_reference),
        coldstart_stage(("rounds",)),
    ),
    config=Config,
    tasks=tasks,
    task=lambda cfg: make_task(cfg.training.objective, cfg.clustering.k, cfg.factorization.dim),
)
