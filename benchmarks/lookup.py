"""Coding one batch of string ids against a set of known ids, as the data stage codes each million views: Arrow's
index_in (which hashes the known set on every call) against socialfeat.data.lookup.IdLookup (built once).

    python benchmarks/lookup.py [--known 100000 1000000 4000000] [--batch 1048576] [--repeats 3]

Prints one JSON line per size of the known set: the best of `--repeats` seconds per batch for each way, the
lookup's one-off build seconds, and whether both gave the same rows.
"""

import argparse
import json
import os
import platform
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from socialfeat.data.lookup import IdLookup


def _best_seconds(work, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def _index_in(batch: pa.Array, known: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.index_in(batch, value_set=known), -1).to_numpy().astype(np.int32)


def _lookup(batch: pa.Array, table: IdLookup) -> np.ndarray:
    encoded = pc.dictionary_encode(batch)  # as the data stage does: each distinct id looked up once
    return table.find(encoded.dictionary)[encoded.indices.to_numpy()]


def one_size(known_count: int, batch_rows: int, repeats: int) -> dict:
    rng = np.random.default_rng(known_count)
    known = pa.array([f"u{n:08d}" for n in rng.permutation(known_count)])
    named = rng.integers(0, int(known_count * 1.05), batch_rows)  # ~5% of the batch's ids are new
    batch = pa.array([f"u{n:08d}" for n in named])
    build_seconds, table = _best_seconds(lambda: IdLookup(known), 1)
    index_in_seconds, expected = _best_seconds(lambda: _index_in(batch, known), repeats)
    lookup_seconds, rows = _best_seconds(lambda: _lookup(batch, table), repeats)
    return {
        "known_ids": known_count,
        "batch_rows": batch_rows,
        "index_in_seconds": round(index_in_seconds, 4),
        "lookup_seconds": round(lookup_seconds, 4),
        "lookup_build_seconds": round(build_seconds, 4),
        "same_rows": bool(np.array_equal(rows, expected)),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--known", type=int, nargs="+", default=[100_000, 1_000_000, 4_000_000])
    parser.add_argument("--batch", type=int, default=1 << 20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for known_count in args.known:
        print(json.dumps(one_size(known_count, args.batch, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
