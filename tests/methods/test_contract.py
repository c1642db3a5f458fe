"""The method contract, over every registered method (after implicit's RecommenderBaseTestMixin): a sound
graph, tasks that learn without Ray, encoders of their declared size, and `--until features` on small data."""

import pytest
import tiny
import torch

from socialfeat.config import ExperimentConfig, load_config
from socialfeat.features.encoder import load_encoder
from socialfeat.features.extract import read_sets
from socialfeat.methods import METHODS
from socialfeat.stages import Method, Stage, check_graph, describe, metric_stages, run_experiment, upstream
from socialfeat.training.loop import evaluate, make_optimizer, model_inputs, train_one_epoch
from socialfeat.training.task import epoch_metric_names
from socialfeat.vision.backbones import DIMS, backbone

CPU = torch.device("cpu")
SMALL = [
    "data.synth.users=200",
    "data.synth.items=160",
    "data.synth.image_size=24",
    "data.synth.styles=4",
    "factorization.epochs=3",
    "clustering.k=6",
    "training.epochs=1",
    "training.batch_size=32",
    "training.image_size=32",
    "training.crop_size=28",
    "training.cpus_per_worker=1",
    "features.random_cnn=false",
]


@pytest.fixture(params=[*METHODS, "tiny"])
def method(request, monkeypatch) -> Method:
    if request.param == "tiny":  # the one registry line, made here for the test only
        monkeypatch.setitem(METHODS, "tiny", tiny.METHOD)
    return METHODS[request.param]


def test_the_graph_is_acyclic_and_every_stage_is_reachable_with_until(method):
    check_graph(method)
    for stage in method.stages:
        ran = [s.name for s in upstream(method, stage.name)]
        assert ran[-1] == stage.name and set(stage.inputs) <= set(ran)
    assert describe(method) == f"{method.name}: " + " -> ".join(s.name for s in method.stages)
    assert set(metric_stages(method).values()) <= {s.name for s in method.stages}
    with pytest.raises(ValueError, match="not a stage of"):
        upstream(method, "no-such-stage")


def test_a_graph_with_a_cycle_or_an_unknown_input_is_refused():
    def stage(name, *inputs):
        return Stage(name, inputs, (), lambda ctx, tmp: {})

    for stages in ((stage("a", "b"), stage("b", "a")), (stage("a"), stage("b", "ghost")), (stage("a"), stage("a"))):
        with pytest.raises(ValueError, match="method broken"):
            check_graph(Method("broken", "", stages, tasks=lambda cfg: {}))


def test_every_task_learns_two_tiny_batches_without_ray_and_its_encoder_has_the_declared_size(method):
    cfg = ExperimentConfig(method=method.name)
    assert method.tasks(cfg) and set(epoch_metric_names(method.task(cfg))) >= {"epoch", "train_loss"}
    for name, task in method.tasks(cfg).items():
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(0)
        model = task.build(*backbone("small"))
        batches = [task.example_batch(8, 32, generator) for _ in range(2)]
        sparse = any(getattr(m, "sparse_gradients", False) for m in model.modules())
        optimizer = (
            make_optimizer(model, "sgd", 0.05, 0.0, 0.9) if sparse else torch.optim.AdamW(model.parameters(), lr=3e-3)
        )
        losses = [train_one_epoch(model, task, batches, optimizer, None, CPU, 28)["loss"] for _ in range(12)]
        assert losses[-1] < 0.7 * losses[0], f"{method.name}/{name}: {losses}"
        held = evaluate(model, task, batches, CPU, 28)  # the holdout pass: eval mode, no gradients
        assert set(held) == {"loss", "examples", *task.epoch_metrics} and held["examples"] == 16
        inputs = model_inputs(batches[0], task, CPU, 28, train=False)
        assert task.encoder(model).eval()(inputs[task.image_columns[0]]).shape == (8, DIMS["small"])


@pytest.mark.slow
def test_until_features_completes_on_small_synthetic_data(method, ray_session, tmp_path):
    cfg = load_config(None, [f"method={method.name}", *SMALL])
    metrics, ctx = run_experiment(method, cfg, str(tmp_path / "run"), until="features")
    assert [r for r in ctx.results if r != "synth"] == [s.name for s in upstream(method, "features")]
    ids, vectors = read_sets(ctx.path("features"))["cnn"]
    spec, _ = load_encoder(ctx.path("train"))
    assert vectors.shape == (metrics["features/items"], spec["dim"]) and spec["dim"] == DIMS["small"]
    assert len(set(ids)) == len(ids) == metrics["data/items"]  # every synthetic item has an image
