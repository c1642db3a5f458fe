"""The experiment as a chain of cached stages: data -> filter -> split -> ... -> metrics.json."""
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from socialfeat import artifacts, storage
from socialfeat.config import ExperimentConfig, to_yaml
from socialfeat.clustering.kmeans import kmeans, nmi
from socialfeat.data.check import dataset_counts
from socialfeat.data.reader import Dataset, read_dataset
from socialfeat.data.splits import filter_by_popularity, split_interactions
from socialfeat.data.synthetic import generate
from socialfeat.factorization.mf import evaluate, factorize, neighbour_metrics, sampled_entries
from socialfeat.factorization.sampling import sample_negatives

log = logging.getLogger(__name__)
STAGES = ("data", "filter", "split", "sampling", "factorization", "kmeans", "train", "features", "evaluate")


@dataclass
class Run:
    """What the stages of one run share: config, stage store, results so far and the loaded data."""

    cfg: ExperimentConfig
    out: str
    store: artifacts.StageStore
    progress: bool = False
    remote: str | None = None  # the storage URI this run publishes to; `out` is then its local working copy
    results: dict[str, artifacts.StageResult] = field(default_factory=dict)
    dataset_root: str = ""
    _dataset: Dataset | None = None

    def dataset(self) -> Dataset:
        if self._dataset is None:
            self._dataset = read_dataset(self.dataset_root)
        return self._dataset

    def checkpoints(self, name: str, config: dict, inputs: dict) -> str | None:
        """Where a remote run's training checkpoints go (shared storage all nodes reach); None: in the stage."""
        if not self.remote:
            return None
        return storage.join(self.remote, "checkpoints", f"{name}-{self.store.key(name, config, inputs)}")

    def stage(self, name: str, config: dict, inputs: dict, compute: Callable[[str], dict]) -> artifacts.StageResult:
        result = self.store.run(name, config, inputs, compute)
        self.results[name] = result
        return result


def _data_stage(run: Run) -> None:
    """Synthesise the dataset (cached by its config) or validate the given one, then count it."""
    if run.cfg.data.path is None:
        synth = run.cfg.data.synth
        result = run.stage("synth", synth.model_dump(), {}, lambda tmp: _synthesise(synth, tmp, run.progress))
        run.dataset_root, source = result.path, f"synth-{result.key}"
    else:
        run.dataset_root = os.path.abspath(storage.local_dataset(run.cfg.data.path))
        source = run.cfg.data.path if storage.is_uri(run.cfg.data.path) else run.dataset_root
    fingerprint = artifacts.dataset_fingerprint(run.dataset_root)

    def compute(tmp: str) -> dict:
        return {f"data/{k}": v for k, v in dataset_counts(run.dataset()).items()}

    # the source, not the local copy's path: a remote run's stages stay valid on any node and cache dir
    run.stage("data", {"root": source}, {"dataset": fingerprint}, compute)


def _synthesise(synth, tmp: str, progress: bool) -> dict:
    counts = generate(synth, os.path.join(tmp, "dataset"), progress=progress)
    for name in os.listdir(os.path.join(tmp, "dataset")):
        os.replace(os.path.join(tmp, "dataset", name), os.path.join(tmp, name))
    os.rmdir(os.path.join(tmp, "dataset"))
    return {f"synth/{k}": v for k, v in counts.items()}


def _filter_stage(run: Run) -> None:
    def compute(tmp: str) -> dict:
        interactions = run.dataset().interactions
        if run.cfg.filter.require_image:
            with_image = run.dataset().items.loc[run.dataset().items["image_ref"].notna(), "item_id"]
            interactions = interactions[interactions["item_id"].isin(with_image)]
        kept, report = filter_by_popularity(interactions, run.cfg.filter)
        kept.to_parquet(os.path.join(tmp, "interactions.parquet"), index=False)
        return report | {"filter/users": int(kept["user_id"].nunique()), "filter/items": int(kept["item_id"].nunique()),
                         "filter/interactions": len(kept)}

    run.stage("filter", run.cfg.filter.model_dump(), {"data": run.results["data"].key}, compute)


def _split_stage(run: Run) -> None:
    source = os.path.join(run.results["filter"].path, "interactions.parquet")

    def compute(tmp: str) -> dict:
        frame, items, counts = split_interactions(pd.read_parquet(source), run.cfg.split)
        frame.to_parquet(os.path.join(tmp, "interactions.parquet"), index=False)
        items.to_parquet(os.path.join(tmp, "items.parquet"), index=False)
        return counts

    run.stage("split", run.cfg.split.model_dump(), {"filter": run.results["filter"].key}, compute)


def _sampling_stage(run: Run) -> None:
    source = os.path.join(run.results["split"].path, "interactions.parquet")
    cfg = run.cfg

    def compute(tmp: str) -> dict:
        interactions = pd.read_parquet(source)
        sampler = sample_negatives
        if len(interactions) >= cfg.sampling.ray_min_positives:
            from socialfeat.distributed.data import sample_negatives_sharded as sampler
        entries, users, items, counts = sampled_entries(interactions, cfg.sampling, cfg.split, sampler)
        entries.to_parquet(os.path.join(tmp, "entries.parquet"), index=False)
        pd.DataFrame({"user_id": users}).to_parquet(os.path.join(tmp, "users.parquet"), index=False)
        pd.DataFrame({"item_id": items}).to_parquet(os.path.join(tmp, "items.parquet"), index=False)
        return counts

    config = cfg.sampling.model_dump(exclude={"ray_min_positives"}) | {"val_fraction": cfg.split.val_fraction}
    run.stage("sampling", config, {"split": run.results["split"].key}, compute)


def _single_labels(run: Run, item_ids: pd.Series) -> np.ndarray | None:
    """Each item's label when every item has exactly one (the synthetic styles), else None."""
    items = run.dataset().items
    if "labels" not in items:
        return None
    labels = items.set_index("item_id")["labels"].reindex(item_ids)
    if not labels.map(lambda v: v is not None and len(v) == 1).all():
        return None
    return labels.map(lambda v: v[0]).to_numpy()


def _factorization_stage(run: Run) -> None:
    sampled = run.results["sampling"].path
    cfg = run.cfg.factorization

    def compute(tmp: str) -> dict:
        entries = pd.read_parquet(os.path.join(sampled, "entries.parquet"))
        users = pd.read_parquet(os.path.join(sampled, "users.parquet"))
        items = pd.read_parquet(os.path.join(sampled, "items.parquet"))
        user_factors, item_factors, history, seconds = factorize(entries, len(users), len(items), cfg)
        np.save(os.path.join(tmp, "user_factors.npy"), user_factors)
        np.save(os.path.join(tmp, "item_factors.npy"), item_factors)
        users.to_parquet(os.path.join(tmp, "users.parquet"), index=False)
        items.to_parquet(os.path.join(tmp, "items.parquet"), index=False)
        artifacts.write_json(os.path.join(tmp, "history.json"), history)
        result = evaluate(user_factors, item_factors, entries, cfg)
        labels = _single_labels(run, items["item_id"])
        result |= neighbour_metrics(item_factors, entries, labels, cfg.neighbours, cfg.seed)
        return result | {"mf/fit_seconds": seconds, "mf/epochs": len(history)}

    run.stage("factorization", cfg.model_dump(), {"sampling": run.results["sampling"].key}, compute)


def _kmeans_stage(run: Run) -> None:
    factors = run.results["factorization"].path

    def compute(tmp: str) -> dict:
        items = pd.read_parquet(os.path.join(factors, "items.parquet"))
        labels, centroids, result = kmeans(np.load(os.path.join(factors, "item_factors.npy")), run.cfg.clustering)
        pd.DataFrame({"item_id": items["item_id"], "pseudo_class": labels}).to_parquet(
            os.path.join(tmp, "pseudo_classes.parquet"), index=False)
        np.save(os.path.join(tmp, "centroids.npy"), centroids)
        truth = _single_labels(run, items["item_id"])
        if truth is not None:
            result["kmeans/nmi"] = nmi(labels, truth)
        return result

    run.stage("kmeans", run.cfg.clustering.model_dump(), {"factorization": run.results["factorization"].key}, compute)


def _train_stage(run: Run) -> None:
    from socialfeat.cnn import train_stage

    inputs = {"kmeans": run.results["kmeans"].key, "factorization": run.results["factorization"].key,
              "data": run.results["data"].key}
    config = run.cfg.training.model_dump()
    checkpoints = run.checkpoints("train", config, inputs)
    run.stage("train", config, inputs,
              lambda tmp: train_stage(run.dataset(), run.results["kmeans"].path, run.results["factorization"].path,
                                      run.cfg.training, tmp, checkpoints))


def _features_stage(run: Run) -> None:
    from socialfeat.cnn import features_stage

    inputs = {"train": run.results["train"].key, "data": run.results["data"].key}
    config = run.cfg.features.model_dump() | {"crop": run.cfg.training.crop_size}
    run.stage("features", config, inputs,
              lambda tmp: features_stage(run.dataset(), run.results["train"].path, run.cfg.features, tmp))


def _evaluate_stage(run: Run) -> None:
    from socialfeat.evaluation.external import file_fingerprint
    from socialfeat.evaluation.suite import evaluate as evaluate_features

    cfg = run.cfg.evaluation
    files = dict(cfg.feature_files) | ({"weights": cfg.weights} if cfg.weights else {})
    fingerprints = {name: file_fingerprint(path) for name, path in files.items()}  # fails before any work

    def compute(tmp: str) -> dict:
        interactions = pd.read_parquet(os.path.join(run.results["filter"].path, "interactions.parquet"))
        parts = pd.read_parquet(os.path.join(run.results["split"].path, "items.parquet"))
        external = dict(cfg.feature_files)
        if cfg.weights:
            from socialfeat.cnn import weights_features

            external["weights"] = os.path.join(tmp, "features_weights.parquet")
            weights_features(run.dataset(), cfg.weights, run.cfg.training, run.cfg.features, external["weights"])
        metrics, curves = evaluate_features(run.dataset(), interactions, parts, run.results["features"].path,
                                            run.results["factorization"].path, run.cfg.split.seed, cfg.ranks,
                                            external, save_dir=tmp)
        artifacts.write_json(os.path.join(tmp, "curves.json"), curves)
        return metrics

    inputs = {name: run.results[name].key for name in ("filter", "split", "features", "factorization")}
    config = {"ranks": cfg.ranks, "seed": run.cfg.split.seed, "files": fingerprints}
    if cfg.weights:  # the weights are read through the training architecture and crops
        config["training"] = run.cfg.training.model_dump(include={"model", "tap", "image_size", "crop_size", "seed"})
    run.stage("evaluate", config, inputs, compute)


STAGE_FUNCTIONS = {"evaluate": _evaluate_stage, "data": _data_stage, "filter": _filter_stage, "split": _split_stage,
                   "sampling": _sampling_stage, "factorization": _factorization_stage, "kmeans": _kmeans_stage,
                   "train": _train_stage, "features": _features_stage}


def _finish(run: Run, started: float) -> dict:
    metrics: dict = {}
    for result in run.results.values():
        metrics.update(result.metrics)
    reused = [r for r in run.results.values() if r.reused]
    metrics.update({"run/seconds": time.perf_counter() - started, "run/stages": len(run.results),
                    "run/stages_reused": len(reused),
                    "run/seconds_saved_by_reuse": sum(r.original_seconds for r in reused)})
    artifacts.write_json(os.path.join(run.out, "run.json"), {
        "experiment": run.cfg.name, "dataset": run.dataset_root,
        "stages": [{"name": r.name, "key": r.key, "path": r.path, "reused": r.reused, "seconds": r.seconds}
                   for r in run.results.values()]})
    artifacts.write_json(os.path.join(run.out, artifacts.METRICS), metrics)
    return metrics


def check_inputs(cfg: ExperimentConfig, until: str | None) -> None:
    """Fail before any work on a stage name or dataset location that cannot be used."""
    if until is not None and until not in STAGES:
        raise ValueError(f"--until {until!r}: not a stage; stages are {', '.join(STAGES)}")
    if cfg.data.path is not None and storage.is_uri(cfg.data.path):
        storage.check_dataset(cfg.data.path)
    elif cfg.data.path is not None and not os.path.isdir(cfg.data.path):
        raise FileNotFoundError(f"{cfg.data.path}: dataset directory does not exist (data.path / --data)")


def run_experiment(cfg: ExperimentConfig, out: str, until: str | None = None, stage_root: str | None = None,
                   progress: bool = False, started: float | None = None, remote: str | None = None,
                   remote_stages: str | None = None) -> tuple[dict, Run]:
    """Run the stages up to `until` (inclusive) into `out`; returns (metrics, run).

    With `remote` (a storage URI), `out` is the local working copy: stages are fetched from and
    published to `remote_stages` (default remote/stages) and checkpoints go to remote/checkpoints;
    `publish` then uploads the run's own files. A run directory this call created is removed again if
    the first stage fails, so bad input leaves nothing half-written; a completed stage is always whole."""
    check_inputs(cfg, until)
    out = os.path.abspath(out)
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    remote_stages = remote_stages or (storage.join(remote, "stages") if remote else None)
    store = artifacts.StageStore(stage_root or os.path.join(out, "stages"), remote_stages)
    run = Run(cfg, out, store, progress, remote)
    started = started or time.perf_counter()
    try:
        for name in STAGES[: STAGES.index(until or STAGES[-1]) + 1]:
            STAGE_FUNCTIONS[name](run)
    except BaseException:
        if created and not run.results:
            shutil.rmtree(out, ignore_errors=True)
        raise
    artifacts.atomic_write_text(os.path.join(out, "config.yaml"), to_yaml(cfg))
    return _finish(run, started), run


def publish(out: str, remote: str | None) -> None:
    """Upload a run's own files (metrics, config, reports; its stages are uploaded as they complete)."""
    if remote:
        count = storage.upload(out, remote, skip=("stages",))
        log.info("run %s: %d files published to %s", out, count, remote)
