"""The comparative method's report section: precision@K and recall@K curves of every ranking (Lei et al. 2016,
Fig. 4)."""

import os

import pandas as pd

from socialfeat.report_html import ReportContext, save_figure


def curve_figures(rc: ReportContext) -> list[tuple[str, str]]:
    path = os.path.join(rc.dirs["recommend"], "curves.parquet")
    if not os.path.exists(path):
        return []
    table = pd.read_parquet(path)

    def draw(figure):
        for n, metric in enumerate(("precision", "recall")):
            axis = figure.add_subplot(1, 2, n + 1)
            for name, rows in table.groupby("ranking", sort=False):
                style = {"linestyle": "--", "color": "grey"} if name == "random" else {"marker": "."}
                axis.plot(rows["k"], rows[metric], label=name, **style)
            axis.set(xlabel="K", ylabel=f"{metric}@K", title=f"{metric}@K of the test users' candidates")
        axis.legend(fontsize="small")

    name = os.path.basename(save_figure(os.path.join(rc.out, "recommendation_curves.png"), draw, size=(10, 4)))
    title = "Precision and recall at K: concealed likes among each test user's candidates"
    if not (pd.read_parquet(os.path.join(rc.dirs["likes"], "users.parquet"))["circle"] > 0).any():
        title += " (no social graph: every negative came from the popularity fallback)"
    return [(title, name)]
