"""Bootstrap over queries: 95% intervals of metrics that are means over queries (users, items), the per-query
values a stage keeps for them, and the paired test `socialfeat compare` runs on two runs or feature sets."""

import os
from collections.abc import Callable

import numpy as np
import pandas as pd

SAMPLES = "samples.parquet"  # a stage's per-query values: metric, query, value
RESAMPLES = 1000
CHUNK_CELLS = 4_000_000  # resampled indices held at once
LEVEL = 0.95

# {metric name: (query ids, one value per query)}; the metric is the mean of the values
Samples = dict[str, tuple[np.ndarray, np.ndarray]]


def _bootstrap_means(values: np.ndarray, seed: int, resamples: int) -> np.ndarray:
    """The means of `resamples` draws with replacement from `values`, drawn a bounded number of cells at a
    time (1,000 resamples of a million queries would be 8 GB of indices at once)."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_CELLS // len(values))
    means = []
    for start in range(0, resamples, per_chunk):
        draws = rng.integers(0, len(values), size=(min(per_chunk, resamples - start), len(values)))
        means.append(values[draws].mean(axis=1))
    return np.concatenate(means)


def interval(values: np.ndarray, seed: int, resamples: int = RESAMPLES) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of `values` (NaN values are left out)."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    return _percentile_interval(_bootstrap_means(values, seed, resamples))


def statistic_interval(
    statistic: Callable[[np.ndarray], float], n: int, seed: int, resamples: int = 200
) -> tuple[float, float]:
    """The bootstrap interval of a statistic that is not a mean (macro mAP): recomputed on each resample."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    return _percentile_interval(values[~np.isnan(values)])


def _percentile_interval(estimates: np.ndarray) -> tuple[float, float]:
    if not len(estimates):
        return float("nan"), float("nan")
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def means(samples: Samples) -> dict:
    """{metric: the mean of its per-query values} (NaN values left out)."""
    return {name: float(np.nanmean(values)) if len(values) else float("nan") for name, (_, values) in samples.items()}


def intervals(samples: Samples, seed: int) -> dict:
    """{metric/ci_low, metric/ci_high} for every metric with per-query values."""
    result = {}
    for name, (_, values) in samples.items():
        result[f"{name}/ci_low"], result[f"{name}/ci_high"] = interval(values, seed)
    return result


def write_samples(directory: str, samples: Samples) -> None:
    frames = [
        pd.DataFrame({"metric": name, "query": np.asarray(queries).astype(str), "value": np.asarray(values, float)})
        for name, (queries, values) in samples.items()
    ]
    if frames:
        pd.concat(frames, ignore_index=True).to_parquet(os.path.join(directory, SAMPLES), index=False)


def record(directory: str, samples: Samples, seed: int) -> dict:
    """Keep a stage's per-query values beside its outputs; returns their intervals as metrics."""
    write_samples(directory, samples)
    return intervals(samples, seed)


def read_samples(directory: str) -> dict[str, pd.Series]:
    """{metric: values indexed by query} of one stage directory (empty when it kept none)."""
    path = os.path.join(directory, SAMPLES)
    if not os.path.isfile(path):
        return {}
    table = pd.read_parquet(path)
    return {name: group.set_index("query")["value"] for name, group in table.groupby("metric", sort=False)}


def paired_p_value(first: np.ndarray, second: np.ndarray, seed: int, resamples: int = RESAMPLES) -> float:
    """Two-sided bootstrap p-value of mean(second - first) != 0, queries resampled jointly."""
    differences = np.asarray(second, np.float64) - np.asarray(first, np.float64)
    differences = differences[~np.isnan(differences)]
    if not len(differences) or not differences.any():
        return 1.0
    return _two_sided(_bootstrap_means(differences, seed, resamples))


def sign_flip_p_value(first: np.ndarray, second: np.ndarray, seed: int, flips: int = 100_000) -> float:
    """Two-sided paired permutation p-value of mean(second - first) != 0: every sign pattern of the differences
    when there are few (exact: 3 seeds cannot give p below 2/8), else `flips` random ones. For a handful of
    pairs (seeds) a bootstrap claims too much: 3 differences of one sign always resample to one sign."""
    differences = np.asarray(second, np.float64) - np.asarray(first, np.float64)
    differences = differences[~np.isnan(differences)]
    if not len(differences) or not differences.any():
        return 1.0
    if len(differences) <= 16:
        signs = 1 - 2 * ((np.arange(2 ** len(differences))[:, None] >> np.arange(len(differences))) & 1)
    else:
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(flips, len(differences)))
    flipped = np.abs((signs * differences).mean(axis=1))
    return float((flipped >= abs(differences.mean()) - 1e-12).mean())


def unpaired_p_value(first: np.ndarray, second: np.ndarray, seed: int, resamples: int = RESAMPLES) -> float:
    """Two-sided bootstrap p-value of mean(second) != mean(first), each resampled on its own."""
    first, second = (np.asarray(v, np.float64) for v in (first, second))
    first, second = first[~np.isnan(first)], second[~np.isnan(second)]
    if not len(first) or not len(second):
        return float("nan")
    means = _bootstrap_means(second, seed + 1, resamples) - _bootstrap_means(first, seed, resamples)
    return _two_sided(means)


def _two_sided(differences: np.ndarray) -> float:
    """Twice the share of resampled differences on the far side of zero (at least 1 / resamples)."""
    tail = min((differences <= 0).mean(), (differences >= 0).mean())
    return float(min(1.0, max(2 * tail, 1 / len(differences))))


def p_value(first: pd.Series, second: pd.Series, seed: int) -> tuple[float, bool]:
    """(p, paired): paired over the queries when both measured the same ones, else unpaired."""
    if first.index.equals(second.index):  # the same queries in the same order (repeated ids included)
        return paired_p_value(first.to_numpy(), second.to_numpy(), seed), True
    same = first.index.is_unique and second.index.is_unique and len(first) == len(second)
    if same and first.index.sort_values().equals(second.index.sort_values()):
        return paired_p_value(first.to_numpy(), second.reindex(first.index).to_numpy(), seed), True
    return unpaired_p_value(first.to_numpy(), second.to_numpy(), seed), False
