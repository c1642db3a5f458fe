"""Pseudo classes, the CNN on Ray Train (checkpoints, a killed worker), features, and their bad input."""
import glob
import io
import json
import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from socialfeat.cli import main
from socialfeat.clustering.kmeans import ClusteringError, kmeans, nmi
from socialfeat.config import ClusteringConfig, ConfigError, TrainingConfig, load_config
from socialfeat.training.loop import evaluate, make_optimizer, train_one_epoch
from socialfeat.vision.backbones import build, embed


def _styles_and_images(synth_dir, size=32):
    items = pd.read_parquet(os.path.join(synth_dir, "items.parquet"))
    images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB").resize((size, size))) for b in items["image"]])
    styles = items["labels"].str[0].astype("category").cat.codes.to_numpy()
    return images, styles


def test_kmeans_recovers_planted_clusters_and_names_bad_k():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5, 8)) * 5
    truth = rng.integers(0, 5, 500)
    points = centres[truth] + rng.standard_normal((500, 8))
    labels, centroids, metrics = kmeans(points, ClusteringConfig(k=5, normalize=False))
    assert nmi(labels, truth) > 0.95 and metrics["kmeans/size_min"] > 0 and centroids.shape == (5, 8)
    again, _, _ = kmeans(points, ClusteringConfig(k=5, normalize=False))
    assert np.array_equal(labels, again)  # seeded
    with pytest.raises(ClusteringError, match="clustering.k = 600 is larger than the 500 items"):
        kmeans(points, ClusteringConfig(k=600))
    with pytest.raises(ConfigError, match="clustering.k"):
        load_config(None, ["clustering.k=1"])


def test_plain_torch_loop_learns_styles_without_ray(synth_dir):
    images, styles = _styles_and_images(synth_dir)
    torch.manual_seed(0)
    model = build("small", int(styles.max()) + 1)
    optimizer = make_optimizer(model, "adamw", 3e-3, 1e-4, 0.9)
    batches = [{"image": torch.from_numpy(images[i:i + 32]), "label": torch.from_numpy(styles[i:i + 32])}
               for i in range(0, 320, 32)]
    held = [{"image": torch.from_numpy(images[320:]), "label": torch.from_numpy(styles[320:])}]
    before = evaluate(model, held, torch.device("cpu"), 28, "pseudo_class")
    for _ in range(8):
        train_one_epoch(model, batches, optimizer, None, torch.device("cpu"), 28, "pseudo_class")
    after = evaluate(model, held, torch.device("cpu"), 28, "pseudo_class")
    assert after["loss"] < before["loss"] and after["top1"] > 2.0 / (styles.max() + 1)
    assert embed(model, "small", "penultimate", torch.zeros(2, 3, 28, 28)).shape == (2, 128)
    alexnet = build("alexnet", 7)
    assert embed(alexnet, "alexnet", "fc6", torch.zeros(1, 3, 64, 64)).shape == (1, 4096)


def test_a_killed_train_worker_resumes_from_its_checkpoint(ray_session, synth_dir, tmp_path):
    from socialfeat.distributed.data import image_dataset
    from socialfeat.distributed.train import fit_cnn

    items = pd.read_parquet(os.path.join(synth_dir, "items.parquet"), columns=["item_id", "labels"])
    labels = items["labels"].str[0].astype("category").cat.codes.to_numpy()
    train = image_dataset(synth_dir, "image", items["item_id"][:300], 32, labels[:300]).drop_columns(["item_id"])
    holdout = image_dataset(synth_dir, "image", items["item_id"][300:], 32, labels[300:]).drop_columns(["item_id"])
    cfg = TrainingConfig(image_size=32, crop_size=28, epochs=10, batch_size=32, max_failures=2)
    storage = str(tmp_path / "ray")
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(
        result=fit_cnn(train.materialize(), holdout.materialize(), cfg, 6, 300, None, storage, "kill")))
    thread.start()
    killed = None
    deadline = time.time() + 240
    while time.time() < deadline and killed is None and thread.is_alive():
        checkpoints = glob.glob(os.path.join(storage, "kill", "checkpoint_*"))
        pid_file = os.path.join(storage, "worker-0.pid")
        if checkpoints and os.path.exists(pid_file):
            killed = int(open(pid_file).read())
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    thread.join(timeout=300)
    assert killed is not None, "training ended before a checkpoint appeared"
    state, history = outcome["result"]
    assert [h["epoch"] for h in history] == list(range(1, 11)) and state["epoch"] == 9
    assert any(h["resumed"] for h in history)  # a later epoch ran in the restarted worker
    assert int(open(os.path.join(storage, "worker-0.pid")).read()) != killed


def test_every_image_missing_is_a_clear_error(ray_session, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    users = [f"u{n}" for n in range(40) for _ in range(8)]
    items = [f"i{(n * 7 + k) % 30}" for n in range(40) for k in range(8)]
    pd.DataFrame({"user_id": users, "item_id": items}).drop_duplicates().to_parquet(data / "interactions.parquet")
    pd.DataFrame({"item_id": [f"i{n}" for n in range(30)],
                  "image_path": [f"gone/{n}.jpg" for n in range(30)]}).to_parquet(data / "items.parquet")
    code = main(["run", "--data", str(data), "--out", str(tmp_path / "run"), "--set", "clustering.k=3",
                 "--set", "filter.min_user_interactions=1", "--set", "filter.min_item_interactions=1"])
    assert code == 2
    assert "has a decodable image" in capsys.readouterr().err
    assert not glob.glob(str(tmp_path / "run" / "stages" / "train-*"))  # nothing half-written


@pytest.mark.slow
def test_default_run_learns_features_far_better_than_a_random_cnn(ray_session, tmp_path):
    out = str(tmp_path / "run")
    assert main(["run", "--out", out]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["features/cnn/label_precision@10"] > metrics["features/random_cnn/label_precision@10"] + 0.25
    assert metrics["run/seconds"] < 300 and metrics["features/items"] == metrics["data/items"]  # every image
    # behaviour-grounded retrieval: learned features find co-viewed items, baselines barely beat random
    assert metrics["retrieval/cnn/jaccard@10"] > 2 * metrics["retrieval/random_cnn/jaccard@10"]
    assert metrics["retrieval/cnn/jaccard@10"] > 2 * metrics["retrieval/random/jaccard@10"]
    assert metrics["retrieval/latent/jaccard@10"] > metrics["retrieval/cnn/jaccard@10"]
    assert metrics["probe/cnn/accuracy"] > metrics["probe/color_hist/accuracy"] + 0.3
    page = open(os.path.join(out, "report.html")).read()  # written at the end of every run
    for figure in ("jaccard_by_rank.png", "neighbours_cnn.png", "neighbours_random_cnn.png", "training.png"):
        assert f"report/{figure}" in page and os.path.getsize(os.path.join(out, "report", figure)) > 1000
    features = pd.read_parquet(glob.glob(os.path.join(out, "stages", "features-*", "features.parquet"))[0])
    assert len(features) == metrics["features/items"] and len(features["vector"].iloc[0]) == 128
