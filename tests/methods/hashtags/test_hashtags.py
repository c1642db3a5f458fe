"""The hashtags method end to end on the synthetic data: the user-specific tensor model tags test posts far
better than the user-agnostic softmax and better than the user's own tag frequency."""

import glob
import json
import os

import pandas as pd
import pytest

from socialfeat.cli import main

EXPERIMENT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "experiments", "hashtags_local.yaml")


# 32-pixel crops train in half the time of the experiment's 64 and tag as well (2-core CPU, 2026-12-02: A@1
# tensor 0.829, mcll 0.252, user_frequency 0.750; label precision@10 0.95). Not fewer epochs: at 12 of the 20
# the tensor model's 0.675 trails the user's own tag frequency (2026-12-03)
SMALL = ["--set", "training.image_size=36", "--set", "training.crop_size=32"]


def _run(out: str, model: str, *until: str) -> dict:
    assert main(["run", EXPERIMENT, "--out", out, "--set", f"hashtags.model={model}", *SMALL, *until]) == 0
    return json.load(open(os.path.join(out, "metrics.json")))


@pytest.mark.slow
def test_the_tensor_model_beats_mcll_and_the_users_own_tag_frequency(ray_session, tmp_path):
    out = str(tmp_path / "run")
    tensor, mcll = _run(out, "tensor"), _run(out, "mcll", "--until", "tagging")  # features: the tensor run's
    assert mcll["run/stages_reused"] == 3  # synth, data, posts are the tensor run's (filter, split: evaluate's)
    assert tensor["hashtags/test_posts"] == mcll["hashtags/test_posts"] > 300
    # the acceptance bounds; README has the measured numbers
    assert tensor["hashtags/tensor/accuracy@1"] >= mcll["hashtags/mcll/accuracy@1"] + 0.10
    assert tensor["hashtags/tensor/accuracy@1"] > tensor["hashtags/user_frequency/accuracy@1"]
    for metrics, model in ((tensor, "tensor"), (mcll, "mcll")):
        assert metrics[f"hashtags/{model}/accuracy@1"] > metrics["hashtags/global_frequency/accuracy@1"]
        assert metrics["hashtags/accuracy@1"] == metrics[f"hashtags/{model}/accuracy@1"]
    assert mcll["hashtags/mcll/precision@10"] > 0.2 and "hashtags/tensor/precision@10" not in tensor
    # cold start from the tensor model's features (0.844 vs a random CNN's 0.621, oracle 0.940 when measured)
    assert tensor["coldstart/oracle/auc"] > tensor["coldstart/cnn/auc"] > tensor["coldstart/random_cnn/auc"] + 0.1
    by_user = pd.read_parquet(glob.glob(os.path.join(out, "stages", "tagging-*", "by_user.parquet"))[0])
    assert len(by_user) == mcll["hashtags/test_posts"] and (by_user["train_posts"] >= 1).all()
    page = open(os.path.join(out, "report.html")).read()
    assert "report/accuracy_by_user.png" in page
