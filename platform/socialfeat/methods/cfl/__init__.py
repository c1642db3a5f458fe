"""Collaborative feature learning (Fang et al., CVPR 2015) as a graph of stages."""

from socialfeat.evaluation.stage import coldstart_stage, evaluate_stage
from socialfeat.features.stage import features_stage
from socialfeat.methods.cfl import rounds, stages
from socialfeat.methods.cfl.tasks import LatentTask, PseudoClassTask, make_task
from socialfeat.methods.common import DATA, FILTER, SPLIT
from socialfeat.report_html import cluster_figures, factorization_figures, training_figures
from socialfeat.stages import Method, Stage


def tasks(cfg) -> dict:
    """Every CNN objective of the method, sized by the config (K pseudo classes, d latent dimensions)."""
    return {
        "pseudo_class": PseudoClassTask(cfg.clustering.k),
        "latent_cosine": LatentTask(cfg.factorization.dim),
        "latent_l2": LatentTask(cfg.factorization.dim, "l2"),
    }


METHOD = Method(
    name="cfl",
    description="collaborative feature learning: view log -> matrix factorisation -> k-means pseudo classes -> CNN",
    stages=(
        DATA,
        FILTER,
        SPLIT,
        Stage("sampling", ("split",), stages.sampling_config, stages.sampling, metrics=("sampling",)),
        Stage(
            "factorization",
            ("sampling",),
            lambda cfg: cfg.factorization.model_dump(),
            stages.factorization,
            metrics=("mf",),
            key_metrics=("mf/pr", "mf/popularity/pr"),
            report=factorization_figures,
        ),
        Stage(
            "kmeans",
            ("factorization",),
            stages.kmeans_config,
            stages.clusters,
            metrics=("kmeans",),
            key_metrics=("kmeans/nmi",),
            report=cluster_figures,
        ),
        Stage(
            "train",
            ("kmeans", "factorization", "data"),
            lambda cfg: cfg.training.model_dump(),
            stages.train,
            metrics=("train",),
            trains=True,
            key_metrics=("train/holdout_top1",),
            report=training_figures,
        ),
        features_stage("train"),
        Stage(
            "rounds",
            ("features", "train", "kmeans", "factorization", "data"),
            rounds.rounds_config,
            rounds.rounds,
            metrics=("rounds",),
            key_metrics=("rounds/*/label_precision@*",),
        ),
        evaluate_stage(("filter", "split", "features", "rounds", "factorization"), references=stages.latent_reference),
        coldstart_stage(stages.factors, ("factorization", "rounds"), config=None),
    ),
    tasks=tasks,
    task=lambda cfg: make_task(cfg.training.objective, cfg.clustering.k, cfg.factorization.dim),
)
