"""cfl's own figures: the factorisation's validation curves and the k-means pseudo-class sizes."""

import os

import pandas as pd
from matplotlib.ticker import MaxNLocator

from socialfeat import artifacts
from socialfeat.report_html import ReportContext, history_plot, plot


def factorization_figures(rc: ReportContext) -> list[tuple[str, str]]:
    history = artifacts.read_json(os.path.join(rc.dirs["factorization"], "history.json"))
    return [
        ("Factorisation", history_plot(rc.out, history, ("rmse", "pr"), "validation RMSE and PR", "factorization.png"))
    ]


def cluster_figures(rc: ReportContext) -> list[tuple[str, str]]:
    classes = pd.read_parquet(os.path.join(rc.dirs["kmeans"], "pseudo_classes.parquet"))

    def draw(axis):
        axis.hist(classes["pseudo_class"].value_counts().to_numpy(), bins=20)
        axis.set(xlabel="items per pseudo class", ylabel="pseudo classes", title="k-means cluster sizes")
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count of classes: no 0.5 ticks

    return [("Pseudo-class sizes", plot(os.path.join(rc.out, "cluster_sizes.png"), draw))]
