"""The words method's report sections: the word-frequency curve with the kept dictionary marked, the predicted
and true words under random te images, and the nearest words of frequent words."""

import os

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from socialfeat import artifacts
from socialfeat.report_html import THUMB, ReportContext, save_figure, thumbnails

LINE = 12  # pixels per text line under a thumbnail (PIL's default bitmap font)


def frequency_figures(rc: ReportContext) -> list[tuple[str, str]]:
    counts = pd.read_parquet(os.path.join(rc.dirs["vocabulary"], "counts.parquet"))["count"].to_numpy()
    config = artifacts.read_json(os.path.join(rc.dirs["vocabulary"], "manifest.json"))["config"]["reads"]["vocabulary"]
    kept = len(pd.read_parquet(os.path.join(rc.dirs["vocabulary"], "vocabulary.parquet")))

    def draw(figure):
        axis = figure.add_subplot()
        axis.loglog(np.arange(1, len(counts) + 1), counts)
        axis.axvspan(config["drop_top"] + 1, config["drop_top"] + kept, alpha=0.2, label=f"dictionary (K = {kept})")
        axis.set(xlabel="word rank", ylabel="tr items with the word", title="Word frequency (tr items)")
        axis.legend()

    return [
        (
            "Word frequency and the dictionary",
            os.path.basename(save_figure(os.path.join(rc.out, "word_frequency.png"), draw)),
        )
    ]


def _caption(draw: ImageDraw.ImageDraw, x: int, y: int, label: str, words: list[str]) -> None:
    line = label
    for word in words:
        if draw.textlength(f"{line} {word}") > 3 * THUMB:
            draw.text((x, y), line, fill="black")
            y, line = y + LINE, " "
        line = f"{line} {word}"
    draw.text((x, y), line, fill="black")


def prediction_figures(rc: ReportContext, queries: int = 6) -> list[tuple[str, str]]:
    """Each te image with its top-10 predicted words and its own dictionary words."""
    predicted = pd.read_parquet(os.path.join(rc.dirs["words"], "predicted.parquet"))
    if predicted.empty:
        return []
    vocabulary = pd.read_parquet(os.path.join(rc.dirs["vocabulary"], "vocabulary.parquet"))["word"].to_numpy()
    truth = pd.read_parquet(os.path.join(rc.dirs["vocabulary"], "item_words.parquet")).set_index("item_id")["words"]
    chosen = predicted.sample(min(queries, len(predicted)), random_state=rc.seed)
    thumbs = thumbnails(rc.dataset_root, chosen["item_id"])
    grid = Image.new("RGB", (4 * THUMB + 16, len(chosen) * (THUMB + 8)), "white")
    draw = ImageDraw.Draw(grid)
    for row, (item_id, top) in enumerate(zip(chosen["item_id"], chosen["predicted"])):
        y = row * (THUMB + 8)
        grid.paste(thumbs[item_id], (0, y))
        _caption(draw, THUMB + 8, y, "predicted:", list(vocabulary[list(top)]))
        _caption(draw, THUMB + 8, y + 3 * LINE, "its words:", list(vocabulary[list(truth[item_id])]))
    path = os.path.join(rc.out, "predicted_words.png")
    grid.save(path)
    return [("Predicted words of te images (and their own words)", os.path.basename(path))]


def nearest_word_figures(rc: ReportContext) -> list[tuple[str, str]]:
    nearest = artifacts.read_json(os.path.join(rc.dirs["words"], "nearest_words.json"))
    if not nearest:
        return []
    lines = [f"{word}: {', '.join(others)}" for word, others in nearest.items()]

    def draw(figure):
        figure.text(0.02, 0.98, "\n".join(lines), va="top", family="monospace", fontsize=9)

    path = save_figure(os.path.join(rc.out, "nearest_words.png"), draw, size=(7, 0.3 * len(lines) + 0.5))
    return [("Nearest words (output-layer embeddings) of the most frequent words", os.path.basename(path))]


def words_figures(rc: ReportContext) -> list[tuple[str, str]]:
    return prediction_figures(rc) + nearest_word_figures(rc)
