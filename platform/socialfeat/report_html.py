"""report.html: metrics, Jaccard-by-rank curves, neighbour image grids, cluster sizes, training curves."""
import glob
import html
import io
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from socialfeat import artifacts
from socialfeat.data.images import decode_rgb, item_image_bytes
from socialfeat.evaluation.retrieval import cosine_neighbours
from socialfeat.features.extract import read_features

THUMB = 64


def _stage_dir(run_dir: str, name: str) -> str | None:
    stages = artifacts.read_json(os.path.join(run_dir, "run.json"))["stages"]
    return next((s["path"] for s in stages if s["name"] == name), None)


def save_figure(path: str, draw, size=(6, 4)) -> str:
    """Draw on a fresh matplotlib figure (`draw(figure)`), save it as a PNG and close it; returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=size)
    draw(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _plot(path: str, draw) -> str:
    """One axis (`draw(axis)`); returns the PNG's file name."""
    return os.path.basename(save_figure(path, lambda figure: draw(figure.add_subplot())))


def _curves_plot(out: str, curves: dict) -> str:
    def draw(axis):
        for name, curve in curves.items():
            axis.plot(np.arange(1, len(curve) + 1), curve, label=name, linestyle="--" if name == "random" else "-")
        axis.set(xlabel="rank", ylabel="mean Jaccard of viewer sets", title="Retrieval: te queries tr (Fang Fig. 5)")
        axis.legend()
    return _plot(os.path.join(out, "jaccard_by_rank.png"), draw)


def _history_plot(out: str, history: list, keys: tuple, title: str, name: str) -> str:
    def draw(axis):
        for key in keys:
            axis.plot([h["epoch"] for h in history], [h[key] for h in history], marker="o", label=key)
        axis.set(xlabel="epoch", title=title)
        axis.legend()
    return _plot(os.path.join(out, name), draw)


def _sizes_plot(out: str, classes: pd.DataFrame) -> str:
    def draw(axis):
        axis.hist(classes["pseudo_class"].value_counts().to_numpy(), bins=20)
        axis.set(xlabel="items per pseudo class", ylabel="pseudo classes", title="k-means cluster sizes")
    return _plot(os.path.join(out, "cluster_sizes.png"), draw)


def _thumbnails(root: str, item_ids) -> dict:
    column = "image" if "image" in pq.read_schema(os.path.join(root, "items.parquet")).names else "image_path"
    table = pq.read_table(os.path.join(root, "items.parquet"), columns=["item_id", column]).to_pandas()
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
    thumbs = _thumbnails(root, set(ids[rows]) | set(ids[neighbours.ravel()]))
    grid = Image.new("RGB", ((k + 1) * (THUMB + 4) + 8, len(rows) * (THUMB + 4)), "white")
    for r, (query, row) in enumerate(zip(rows, neighbours)):
        grid.paste(thumbs[ids[query]], (0, r * (THUMB + 4)))
        for c, item in enumerate(row):
            grid.paste(thumbs[ids[item]], (12 + (c + 1) * (THUMB + 4), r * (THUMB + 4)))
    path = os.path.join(out, f"neighbours_{name}.png")
    grid.save(path)
    return os.path.basename(path)


def _grid_order(path: str) -> tuple:
    """The learned CNN first, then the others by name."""
    return (not path.endswith("features.parquet"), os.path.basename(path))


def write_html(run_dir: str, queries: int = 6, seed: int = 0) -> str:
    """Write run_dir/report.html and its PNGs under run_dir/report/; returns the HTML's path."""
    out = os.path.join(run_dir, "report")
    os.makedirs(out, exist_ok=True)
    metrics = artifacts.read_json(os.path.join(run_dir, artifacts.METRICS))
    figures = []
    evaluate, features, train, kmeans_dir, factors, split = (
        _stage_dir(run_dir, n) for n in ("evaluate", "features", "train", "kmeans", "factorization", "split"))
    if evaluate:
        figures.append(("Jaccard of viewer sets by rank", _curves_plot(out, artifacts.read_json(os.path.join(evaluate, "curves.json")))))
    if features and split:
        parts = pd.read_parquet(os.path.join(split, "items.parquet")).set_index("item_id")["part"]
        ids, _ = read_features(os.path.join(features, "features.parquet"))
        te = [i for i in ids if parts.get(i) == "te"]
        chosen = list(np.random.default_rng(seed).choice(te, min(queries, len(te)), replace=False)) if te else []
        root = artifacts.read_json(os.path.join(run_dir, "run.json"))["dataset"]
        found = glob.glob(os.path.join(features, "features*.parquet"))
        found += glob.glob(os.path.join(evaluate, "features_*.parquet")) if evaluate else []  # baselines, weights
        for path in sorted(found, key=_grid_order):
            name = "cnn" if path.endswith("features.parquet") else os.path.basename(path)[9:-8]
            figures.append((f"Nearest tr neighbours of te queries: {name} (query left)",
                            _grid_plot(out, name, root, path, parts, chosen)))
    if kmeans_dir:
        figures.append(("Pseudo-class sizes", _sizes_plot(out, pd.read_parquet(os.path.join(kmeans_dir, "pseudo_classes.parquet")))))
    if train:
        history = artifacts.read_json(os.path.join(train, "history.json"))
        figures.append(("CNN training", _history_plot(out, history, ("train_loss", "holdout_loss", "holdout_top1", "holdout_top5"),
                                                      "CNN on pseudo classes", "training.png")))
    if factors:
        history = artifacts.read_json(os.path.join(factors, "history.json"))
        figures.append(("Factorisation", _history_plot(out, history, ("rmse", "pr"), "validation RMSE and PR", "factorization.png")))
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>" for k, v in sorted(metrics.items()))
    sections = "".join(f"<h2>{html.escape(title)}</h2><img src='report/{name}' alt='{html.escape(title)}'>"
                       for title, name in figures)
    config = html.escape(open(os.path.join(run_dir, "config.yaml")).read())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>socialfeat run</title><style>"
            f"body{{font-family:sans-serif;margin:2em}}td{{padding:2px 8px}}img{{max-width:100%}}</style></head><body>"
            f"<h1>socialfeat run: {html.escape(os.path.basename(os.path.abspath(run_dir)))}</h1>{sections}"
            f"<h2>Metrics</h2><table>{rows}</table><h2>Config</h2><pre>{config}</pre></body></html>")
    path = os.path.join(run_dir, "report.html")
    artifacts.atomic_write_text(path, page)
    return path
