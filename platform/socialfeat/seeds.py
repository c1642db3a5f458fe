"""A run repeated over seeds (`socialfeat run --seeds N`): each seed's run in OUT/seed<s>, the data's stages
shared, and OUT/seeds.json with every metric's mean, spread and per-seed values."""

import math
import os

import numpy as np
from pydantic import BaseModel

from socialfeat import artifacts
from socialfeat.config import ExperimentConfig
from socialfeat.console import INTERVALS

SEEDS_FILE = "seeds.json"
KEPT = ("data",)  # sections whose seeds stay: the dataset is the same in every repeat


def seed_keys(cfg: ExperimentConfig) -> list[str]:
    """Every `seed` key of the config (split, sampling, factorization, training, the method's own), the
    data's excepted: what a repeat varies."""
    found = []

    def visit(model: BaseModel, prefix: str) -> None:
        for name, value in model:
            if isinstance(value, BaseModel) and name not in KEPT:
                visit(value, f"{prefix}{name}.")
            elif name == "seed":
                found.append(f"{prefix}{name}")

    visit(cfg, "")
    return found


def seed_overrides(cfg: ExperimentConfig, repeat: int) -> list[str]:
    """KEY=VALUE for repeat r: each seed key moved r from its configured value (r = 0 is the run as written)."""
    raw = cfg.model_dump()

    def value(key: str) -> int:
        node = raw
        for part in key.split("."):
            node = node[part]
        return node

    return [f"{key}={value(key) + repeat}" for key in seed_keys(cfg)]


def summarise(runs: list[dict]) -> dict:
    """{metric: {mean, sd, min, max, n, values}} over the seeds' metrics (numbers every seed reported)."""
    names = [n for n in runs[0] if not n.endswith(INTERVALS) and all(_number(r.get(n)) for r in runs)]
    summary = {}
    for name in names:
        values = np.array([float(r[name]) for r in runs])
        sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary[name] = {
            "mean": float(values.mean()),
            "sd": sd,
            "min": float(values.min()),
            "max": float(values.max()),
            "n": len(values),
            "values": values.tolist(),
        }
    return summary


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def write_seeds(out: str, runs: list[dict], keys: list[str]) -> str:
    path = os.path.join(out, SEEDS_FILE)
    artifacts.write_json(path, {"seed_keys": keys, "metrics": summarise(runs)})
    return path


def mean_line(name: str, entry: dict) -> str:
    """'retrieval/cnn/jaccard@10  0.084 ± 0.006 (0.077 .. 0.090, 3 seeds)'."""
    return (
        f"  {name:<44} {entry['mean']:.4g} ± {entry['sd']:.2g} "
        f"({entry['min']:.4g} .. {entry['max']:.4g}, {entry['n']} seeds)"
    )
