"""The hashtags method's report section: A@1 by the user's number of train posts (Veit et al. 2018, Fig. 5)."""

import os

import numpy as np
import pandas as pd

from socialfeat.report_html import ReportContext, save_figure

BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # lower edges of the train-post buckets


def by_user_figures(rc: ReportContext) -> list[tuple[str, str]]:
    path = os.path.join(rc.dirs["tagging"], "by_user.parquet")
    if not os.path.exists(path):
        return []
    frame = pd.read_parquet(path)
    bucket = np.searchsorted(BUCKETS, frame["train_posts"].to_numpy(), side="right") - 1
    grouped = frame.drop(columns=["user", "train_posts"]).groupby(bucket).mean()
    sizes = pd.Series(bucket).value_counts().reindex(grouped.index)
    labels = [f"{BUCKETS[b]}+\n({sizes[b]})" for b in grouped.index]

    def draw(figure):
        axis = figure.add_subplot()
        for name in grouped.columns:
            axis.plot(range(len(grouped)), grouped[name], marker="o", label=name)
        axis.set_xticks(range(len(grouped)), labels)
        axis.set(xlabel="user's train posts (test posts)", ylabel="accuracy@1", title="A@1 by user activity")
        axis.legend()

    name = os.path.basename(save_figure(os.path.join(rc.out, "accuracy_by_user.png"), draw))
    return [("Tagging accuracy@1 by the user's number of train posts", name)]
