"""report.html: each stage of the run's method draws its own section (curves, image grids, cluster sizes,
training curves), results first; then the metrics and the config."""

import html
import os
import shutil
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image

from socialfeat import artifacts
from socialfeat.data import schema
from socialfeat.data.images import decode_rgb, item_image_bytes
from socialfeat.features.extract import read_features, set_paths
from socialfeat.report import run_samples, verdicts, with_intervals
from socialfeat.stages import declares
from socialfeat.stats.retrieval import cosine_neighbours

THUMB = 64


@dataclass
class ReportContext:
    """What a stage's report function draws from: the run's stage directories and where PNGs go."""

    out: str  # the PNG directory (RUN/report)
    dirs: dict[str, str]  # stage name -> its directory in this run
    dataset_root: str
    seed: int = 0
    queries: int = 6  # te queries in the neighbour grids


def save_figure(path: str, draw, size=(6, 4)) -> str:
    """Draw on a fresh matplotlib figure (`draw(figure)`), save it as a PNG and close it; returns `path`."""
    import matplotlib  # the headless backend is chosen before pyplot loads, and only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=size)
    draw(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot(path: str, draw) -> str:
    """One axis (`draw(axis)`); returns the PNG's file name."""
    return os.path.basename(save_figure(path, lambda figure: draw(figure.add_subplot())))


def history_plot(out: str, history: list, keys: tuple, title: str, name: str) -> str:
    def draw(axis):
        for key in keys:
            axis.plot([h["epoch"] for h in history], [h[key] for h in history], marker="o", label=key)
        axis.set(xlabel="epoch", title=title)
        axis.legend()

    return plot(os.path.join(out, name), draw)


def training_figures(rc: ReportContext) -> list[tuple[str, str]]:
    """The loss and every holdout metric the task reported, per epoch."""
    history = artifacts.read_json(os.path.join(rc.dirs["train"], "history.json"))
    keys = ("train_loss", "holdout_loss") + tuple(
        k for k in history[0] if k.startswith("holdout_") and k != "holdout_loss" and k != "holdout_loss_vs_chance"
    )
    return [("CNN training", history_plot(rc.out, history, keys, "CNN training", "training.png"))]


def _curves_plot(out: str, curves: dict) -> str:
    def draw(axis):
        for name, curve in curves.items():
            axis.plot(np.arange(1, len(curve) + 1), curve, label=name, linestyle="--" if name == "random" else "-")
        axis.set(xlabel="rank", ylabel="mean Jaccard of viewer sets", title="Retrieval: te queries tr (Fang Fig. 5)")
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # beside the curves, not on them

    return plot(os.path.join(out, "jaccard_by_rank.png"), draw)


def coldstart_figures(rc: ReportContext) -> list[tuple[str, str]]:
    """Recall@K of the te items each user viewed, per feature set, random factors and the oracle."""
    curves = artifacts.read_json(os.path.join(rc.dirs["coldstart"], "curves.json"))

    def draw(axis):
        for name, curve in curves.items():
            style = "--" if name in ("random", "oracle") else "-"
            axis.plot(np.arange(1, len(curve) + 1), curve, label=name, linestyle=style)
        axis.set(xlabel="K", ylabel="mean recall@K", title="Cold start: users ranked over unseen te items")
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")

    return [("Cold start: recall@K per feature set", plot(os.path.join(rc.out, "coldstart_recall.png"), draw))]


def thumbnails(root: str, item_ids) -> dict:
    column = "image" if "image" in schema.table_schema(root, schema.ITEMS).names else "image_path"
    table = schema.read_columns(root, schema.ITEMS, ["item_id", column]).to_pandas()
    stored = table.set_index("item_id")[column].reindex(list(item_ids))
    thumbs = {}
    for item_id, value in stored.items():
        data = item_image_bytes(root, value, None) if column == "image" else item_image_bytes(root, None, value)
        image = decode_rgb(data)
        thumbs[item_id] = image.resize((THUMB, THUMB)) if image is not None else Image.new("RGB", (THUMB, THUMB))
    return thumbs


def _grid_plot(out: str, name: str, root: str, features_path: str, parts: pd.Series, queries: list, k: int = 8) -> str:
    ids, vectors = read_features(features_path)
    part = parts.reindex(ids).to_numpy()
    database = np.flatnonzero(part == "tr")
    rows = [np.flatnonzero(ids == q)[0] for q in queries if q in set(ids)]
    neighbours = database[cosine_neighbours(vectors[rows], vectors[database], k)]
    thumbs = thumbnails(root, set(ids[rows]) | set(ids[neighbours.ravel()]))
    grid = Image.new("RGB", ((k + 1) * (THUMB + 4) + 8, len(rows) * (THUMB + 4)), "white")
    for r, (query, row) in enumerate(zip(rows, neighbours)):
        grid.paste(thumbs[ids[query]], (0, r * (THUMB + 4)))
        for c, item in enumerate(row):
            grid.paste(thumbs[ids[item]], (12 + (c + 1) * (THUMB + 4), r * (THUMB + 4)))
    path = os.path.join(out, f"neighbours_{name}.png")
    grid.save(path)
    return os.path.basename(path)


def evaluation_figures(rc: ReportContext) -> list[tuple[str, str]]:
    """Jaccard by rank per feature set, then neighbour grids of random te queries for every feature set in
    the run's indexes (the learned encoder's first)."""
    figures = [
        (
            "Jaccard of viewer sets by rank",
            _curves_plot(rc.out, artifacts.read_json(os.path.join(rc.dirs["evaluate"], "curves.json"))),
        )
    ]
    paths = {}
    for stage in ("features", "evaluate"):
        paths |= set_paths(rc.dirs[stage]) if stage in rc.dirs else {}
    if "cnn" not in paths or "split" not in rc.dirs:
        return figures
    parts = pd.read_parquet(os.path.join(rc.dirs["split"], "items.parquet")).set_index("item_id")["part"]
    ids, _ = read_features(paths["cnn"])
    te = [i for i in ids if parts.get(i) == "te"]
    chosen = list(np.random.default_rng(rc.seed).choice(te, min(rc.queries, len(te)), replace=False)) if te else []
    for name in sorted(paths, key=lambda n: (n != "cnn", n)):
        figures.append(
            (
                f"Nearest tr neighbours of te queries: {name} (query left)",
                _grid_plot(rc.out, name, rc.dataset_root, paths[name], parts, chosen),
            )
        )
    return figures


SHARED_LAST = ("evaluate", "coldstart", "factorization")  # every method's common stages, after its own
STYLE = (
    "body{font-family:sans-serif;margin:1.5em}td,th{padding:2px 8px;text-align:left}img{max-width:100%}"
    ".figures{display:flex;flex-wrap:wrap;gap:1em 2em}figure{margin:0}figcaption{font-weight:bold}"
    "table.summary{border-collapse:collapse;margin-bottom:1em}table.summary td{border-bottom:1px solid #ddd;"
    "vertical-align:top}.yes{color:#17662a}.no{color:#9a5b00}details{margin:0.3em 0}summary{cursor:pointer}"
)


def report_order(method) -> list:
    """The method's own stages (results first), then the evaluation every method shares."""
    own = [stage for stage in reversed(method.stages) if stage.name not in SHARED_LAST]
    return own + [stage for name in SHARED_LAST for stage in method.stages if stage.name == name]


def summary_html(run_dir: str, method, metrics: dict) -> str:
    """The answer first: each key metric of the method beside its baselines, with intervals and whether it
    beats them (paired bootstrap over the same queries)."""
    patterns = tuple(p for stage in report_order(method) for p in stage.key_metrics)
    rows = []
    for verdict in verdicts(metrics, run_samples(run_dir), patterns):
        beaten = set(verdict.beaten())
        rivals = "<br>".join(
            f"{html.escape(name)} {value:.3g} {interval}"
            + (f" (p {p:.3f})" if p is not None else "")
            + (" &#10003;" if name in beaten else "")
            for name, value, interval, p in verdict.baselines
        )
        mark = "yes" if verdict.sentence().startswith("beats") else "no"
        rows.append(
            f"<tr><td><b>{html.escape(verdict.metric)}</b> {'(lower is better)' if verdict.lower_is_better else ''}"
            f"</td><td><b>{verdict.value:.3g}</b> {verdict.interval}</td><td>{rivals}</td>"
            f"<td class='{mark}'>{html.escape(verdict.sentence())}</td></tr>"
        )
    if not rows:
        return ""
    return (
        "<h2>Summary</h2><table class='summary'><tr><th>key metric</th><th>this run [95% interval]</th>"
        "<th>baselines (paired bootstrap p; &#10003; beaten)</th><th>verdict</th></tr>" + "".join(rows) + "</table>"
    )


def _metrics_html(method, metrics: dict) -> str:
    """The metrics grouped by the stage that reports them, each group collapsible."""
    groups: dict[str, list] = {}
    for name, value, interval in with_intervals(metrics):
        stage = next((s.name for s in method.stages if declares(s.metrics, name)), "run")
        groups.setdefault(stage, []).append((name, value, interval))
    order = [s.name for s in report_order(method)] + ["run"]
    parts = []
    for stage in sorted(groups, key=lambda g: order.index(g) if g in order else len(order)):
        rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{v:.4g}</td><td>{i}</td></tr>" for n, v, i in groups[stage])
        parts.append(f"<details><summary>{stage} ({len(groups[stage])})</summary><table>{rows}</table></details>")
    return "".join(parts)


def write_html(run_dir: str, method) -> str:
    """Write run_dir/report.html and its PNGs under run_dir/report/ for a run of `method`; returns the HTML's
    path. The figures are drawn into a fresh directory that then replaces report/: a report never shows
    the figures of an earlier run of another method in the same directory."""
    final = os.path.join(run_dir, "report")
    out = os.path.join(run_dir, f".report.tmp-{uuid.uuid4().hex[:8]}")
    os.makedirs(out)
    metrics = artifacts.read_json(os.path.join(run_dir, artifacts.METRICS))
    run = artifacts.read_json(os.path.join(run_dir, "run.json"))
    rc = ReportContext(out, {s["name"]: s["path"] for s in run["stages"]}, run["dataset"])
    figures = []
    for stage in report_order(method):  # the method's own results first, then the shared evaluation
        if stage.report is not None and stage.name in rc.dirs:
            figures += stage.report(rc)
    sections = "".join(
        f"<figure><figcaption>{html.escape(title)}</figcaption><img src='report/{name}' alt='{html.escape(title)}'>"
        "</figure>"
        for title, name in figures
    )
    config = html.escape(open(os.path.join(run_dir, "config.yaml")).read())
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>socialfeat run</title><style>{STYLE}</style>"
        f"</head><body><h1>socialfeat run: {html.escape(os.path.basename(os.path.abspath(run_dir)))} "
        f"({html.escape(method.name)})</h1>{summary_html(run_dir, method, metrics)}"
        f"<h2>Figures</h2><div class='figures'>{sections}</div>"
        f"<h2>Metrics, by stage</h2>{_metrics_html(method, metrics)}"
        f"<details><summary>Config</summary><pre>{config}</pre></details></body></html>"
    )
    _replace_dir(out, final)
    path = os.path.join(run_dir, "report.html")
    artifacts.atomic_write_text(path, page)
    return path


def _replace_dir(new: str, final: str) -> None:
    """`new` in place of `final` (the old one moved aside first, then removed)."""
    aside = f"{os.path.dirname(final)}/.{os.path.basename(final)}.old-{uuid.uuid4().hex[:8]}"
    if os.path.exists(final):
        os.replace(final, aside)
    os.replace(new, final)
    shutil.rmtree(aside, ignore_errors=True)
