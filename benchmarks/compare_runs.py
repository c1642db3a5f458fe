"""Two run directories side by side: are their factors and pseudo classes the same bytes, and how far apart
are their metrics? One JSON line per run pair (used to check a refactor changes no result).

    python benchmarks/compare_runs.py BEFORE_RUN AFTER_RUN [--label NAME]
"""

import argparse
import glob
import json
import os

import numpy as np
import pandas as pd

ARTEFACTS = (
    "factorization-*/item_factors.npy",
    "factorization-*/user_factors.npy",
    "kmeans-*/pseudo_classes.parquet",
    "kmeans-*/centroids.npy",
)
FAMILIES = {"cnn": ("features/", "train/"), "retrieval": ("retrieval/",), "probe": ("probe/",), "mf": ("mf/",)}


def _stage_file(run: str, pattern: str) -> str:
    found = glob.glob(os.path.join(run, "stages", pattern))
    if len(found) != 1:
        raise SystemExit(f"{run}: expected one stages/{pattern}, found {len(found)}")
    return found[0]


def _identical(before: str, after: str) -> bool:
    if before.endswith(".npy"):
        a, b = np.load(before), np.load(after)
        return a.dtype == b.dtype and np.array_equal(a, b)
    return pd.read_parquet(before).equals(pd.read_parquet(after))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    record = {"label": args.label, "bit_identical": {}}
    for pattern in ARTEFACTS:
        record["bit_identical"][pattern] = _identical(
            _stage_file(args.before, pattern), _stage_file(args.after, pattern)
        )
    before = json.load(open(os.path.join(args.before, "metrics.json")))
    after = json.load(open(os.path.join(args.after, "metrics.json")))
    for family, prefixes in FAMILIES.items():
        names = [n for n in before if n.startswith(prefixes) and not n.endswith("seconds")]
        record[f"max_abs_diff/{family}"] = max((abs(before[n] - after[n]) for n in names if n in after), default=None)
        record[f"missing_after/{family}"] = sorted(n for n in names if n not in after)
    record["run_seconds"] = {"before": round(before["run/seconds"], 1), "after": round(after["run/seconds"], 1)}
    print(json.dumps(record))


if __name__ == "__main__":
    main()
