"""Typed configs: defaults, YAML, --set overrides, and errors that name the key."""

import pytest

from socialfeat.config import ConfigError, parse_override
from socialfeat.methods import load_config


def test_defaults_are_the_local_experiment():
    cfg = load_config()
    assert cfg.name == "cfl_local" and cfg.data.path is None and cfg.factorization.engine == "als"


def test_overrides_are_typed_by_yaml():
    cfg = load_config(
        None, ["factorization.dim=64", "factorization.reg=1e-2", "filter.until_stable=false", "data.path=/some/where"]
    )
    assert cfg.factorization.dim == 64 and cfg.factorization.reg == pytest.approx(0.01)
    assert cfg.filter.until_stable is False and cfg.data.path == "/some/where"
    assert parse_override("a.b=null") == ("a.b", None)


def test_unknown_key_is_named_with_the_valid_ones(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("factorization:\n  dimm: 3\n")
    with pytest.raises(ConfigError) as error:
        load_config(str(path))
    message = str(error.value)
    assert "factorization.dimm" in message and "unknown" in message and "dim" in message and str(path) in message


def test_negative_dimension_is_named():
    with pytest.raises(ConfigError, match=r"factorization\.dim"):
        load_config(None, ["factorization.dim=-4"])


def test_bad_choice_and_malformed_override():
    with pytest.raises(ConfigError, match="factorization.engine"):
        load_config(None, ["factorization.engine=magic"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_config(None, ["factorization.dim"])


def test_missing_experiment_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))


def test_shipped_experiments_load_and_the_local_one_is_the_default():
    import glob
    import os

    root = os.path.join(os.path.dirname(__file__), "..", "experiments")
    for path in glob.glob(os.path.join(root, "*.yaml")):
        load_config(path)
    assert load_config(os.path.join(root, "cfl_local.yaml")) == load_config()


def test_sparse_hashtag_tables_need_sgd_and_one_gpu_worker():
    sparse = ["method=hashtags", "hashtags.sparse=true"]
    with pytest.raises(ConfigError, match="hashtags.sparse .* training.optimizer 'adamw'"):
        load_config(None, sparse)
    gpus = ["training.optimizer=sgd", "training.use_gpu=true", "training.num_workers=4"]
    with pytest.raises(ConfigError, match="NCCL cannot all-reduce across training.num_workers = 4"):
        load_config(None, [*sparse, *gpus])
    assert load_config(None, [*sparse, *gpus[:2]]).hashtags.sparse  # one GPU worker, or CPU workers (gloo)
