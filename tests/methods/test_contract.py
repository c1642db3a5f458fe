"""The method contract, over every registered method and a test-only fifth one (after implicit's
RecommenderBaseTestMixin): a sound graph, tasks that learn without Ray, encoders of their declared size, cache
keys that move exactly with the config keys each stage declares, and the whole graph (the run each method's
end-to-end test shares, on a sharded dataset but cfl's default one; the test method's on small data): every
stage's metrics among the names it declares, every key-metric pattern matched, the trained task the declared one;
the data in shards, giving the numbers of its single-file form."""

import fnmatch
import os

import pytest
import tiny
import torch

from conftest import shared_run
from socialfeat import artifacts
from socialfeat.config import build_config, parse_override, set_dotted
from socialfeat.features.encoder import load_encoder
from socialfeat.features.extract import read_sets
from socialfeat.methods import METHODS, load_config
from socialfeat.pipeline.train import task_record
from socialfeat.stages import (
    Method,
    Stage,
    check_graph,
    declares,
    describe,
    expand,
    plan_keys,
    reporting_stages,
    run_experiment,
    stage_map,
    upstream,
)
from socialfeat.training.loop import evaluate, make_optimizer, model_inputs, train_one_epoch
from socialfeat.training.task import epoch_metric_names
from socialfeat.vision.backbones import DIMS, backbone

CPU = torch.device("cpu")
ALL = {**METHODS, "tiny": tiny.METHOD}
SMALL = [
    "data.synth.users=200",
    "data.synth.items=160",
    "data.synth.image_size=24",
    "data.synth.styles=4",
    "data.synth.owner_post_probability=0.5",  # posts for hashtags
    "data.synth.shards=3",  # every method reads a sharded dataset (one compared with the single file below)
    "factorization.epochs=3",
    "training.epochs=1",
    "training.batch_size=32",
    "training.image_size=32",
    "training.crop_size=28",
    "training.cpus_per_worker=1",
]
OWN = {"cfl": ["clustering.k=6", "clustering.rounds=2"], "comparative": ["comparative.tag_clusters=8"]}


def small_config(method: Method, *extra: str):
    raw: dict = {"method": method.name}
    for text in [*SMALL, *OWN.get(method.name, []), *extra]:
        set_dotted(raw, *parse_override(text))
    return build_config(raw, "contract", {method.name: method.config})


@pytest.fixture(params=list(ALL))
def method(request) -> Method:
    return ALL[request.param]


def test_the_graph_is_acyclic_and_every_stage_is_reachable_with_until(method):
    check_graph(method)
    for stage in method.stages:
        ran = [s.name for s in upstream(method, stage.name)]
        assert ran[-1] == stage.name and set(stage.inputs) <= set(ran)
    assert describe(method) == f"{method.name}: " + " -> ".join(s.name for s in method.stages)
    assert reporting_stages(method, "run/seconds") == [method.stages[0].name]
    assert all(stage.metrics for stage in method.stages), "a stage declares no metric names"
    with pytest.raises(ValueError, match="not a stage of"):
        upstream(method, "no-such-stage")


def test_a_graph_with_a_cycle_or_an_unknown_input_is_refused():
    def stage(name, *inputs):
        return Stage(name, inputs, (), lambda ctx, tmp: {})

    for stages in ((stage("a", "b"), stage("b", "a")), (stage("a"), stage("b", "ghost")), (stage("a"), stage("a"))):
        with pytest.raises(ValueError, match="method broken"):
            check_graph(Method("broken", "", stages, tasks=lambda cfg: {}))


def test_a_method_owns_its_config_section():
    shared = set(METHODS["cfl"].config.model_fields) - {"clustering"}
    for method in ALL.values():
        own = set(method.config.model_fields) - shared
        assert own, f"{method.name} declares no config section of its own"
        for other in ALL.values():
            if other is not method:
                assert not own & set(other.config.model_fields), f"{method.name} shares {own} with {other.name}"


def test_every_task_learns_two_tiny_batches_without_ray_and_its_encoder_has_the_declared_size(method):
    cfg = method.config(method=method.name)
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


def test_the_train_stage_declares_every_tasks_epoch_metrics(method):
    train = stage_map(method)["train"]
    for task in method.tasks(method.config(method=method.name)).values():
        for name in task.epoch_metrics:
            assert declares(train.metrics, f"train/{name}") and declares(train.metrics, f"train/holdout_{name}")


def _leaf_keys(cfg, path: str) -> list[str]:
    value = cfg
    for part in path.split("."):
        value = getattr(value, part)
    if not hasattr(type(value), "model_fields"):
        return [path]
    return [key for name in type(value).model_fields for key in _leaf_keys(cfg, f"{path}.{name}")]


def _changed(method: Method, cfg, key: str):
    """`cfg` with the value at `key` changed to another valid one (None when no simple change validates)."""
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    candidates = [not value] if isinstance(value, bool) else []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        candidates = [value + 1, value * 2, value / 2, value - 1]
    elif isinstance(value, str):
        candidates = ["sgd", "adamw", "implicit_als", "alexnet", "one_vs_all", "mlp", "twonets", "popularity", "last"]
    for candidate in candidates:
        raw = cfg.model_dump(mode="json")
        set_dotted(raw, key, candidate)
        try:
            changed = build_config(raw, "contract", {method.name: method.config})
        except ValueError:
            continue
        if changed != cfg:
            return changed
    return None


def _downstream(stages: list[Stage], names: set[str]) -> set[str]:
    found = set(names)
    for stage in stages:
        if set(stage.inputs) & found:
            found.add(stage.name)
    return found


def test_each_declared_key_moves_exactly_the_keys_of_the_stages_that_read_it_and_what_follows(method):
    cfg = small_config(method)
    stages = expand(method, cfg)
    before = plan_keys(method, cfg, "dataset")
    checked = 0
    for stage in stages:
        for declared in stage.reads:
            for key in _leaf_keys(cfg, declared)[:6]:
                changed = _changed(method, cfg, key)
                if changed is None or key in stage.unkeyed or key == "clustering.rounds":  # R adds stages
                    continue
                after = plan_keys(method, changed, "dataset")
                readers = {s.name for s in stages if any(key == r or key.startswith(r + ".") for r in s.reads)}
                moved = {name for name in before if before[name] != after.get(name)}
                assert moved == _downstream(stages, readers), f"{method.name}: changing {key}"
                checked += 1
    assert checked >= 3


_RUNS: dict = {}


def _whole_run(method: Method, tmp_path_factory):
    """The test-only method's whole graph on small synthetic data, run once per session."""
    if method.name not in _RUNS:
        cfg = small_config(method)
        out = str(tmp_path_factory.mktemp(f"contract-{method.name}") / "run")
        _RUNS[method.name] = (cfg, *run_experiment(method, cfg, out))
    return _RUNS[method.name]


def _method_run(name: str, tmp_path_factory):
    """A registered method's whole graph: the run its end-to-end test shares (conftest.METHOD_RUNS); cfl's
    with a second pseudo-class round, so that the rounds' stages are in the graph."""
    if name == "cfl":
        return shared_run("cfl_round2", tmp_path_factory)
    return shared_run(name, tmp_path_factory)


@pytest.fixture
def whole_run(method, ray_session, tmp_path_factory):
    if method.name in METHODS:
        return _method_run(method.name, tmp_path_factory).context()
    return _whole_run(method, tmp_path_factory)


@pytest.mark.slow
def test_a_sharded_dataset_gives_the_numbers_of_its_single_file_form(ray_session, tmp_path_factory):
    method = ALL["tiny"]
    _, sharded, _ = _whole_run(method, tmp_path_factory)
    out = str(tmp_path_factory.mktemp("single-file") / "run")
    single, ctx = run_experiment(method, small_config(method, "data.synth.shards=1"), out)
    assert os.path.isfile(ctx.path("synth", "items.parquet"))
    timing = ("seconds", "rss", "reused", "saved_by_reuse")
    same = {name: value for name, value in single.items() if not any(word in name for word in timing)}
    assert len(same) > 20 and same == {name: sharded[name] for name in same}


@pytest.mark.slow
def test_the_whole_graph_runs_on_small_synthetic_data(method, whole_run):
    cfg, metrics, ctx = whole_run
    assert [name for name in ctx.results if name != "synth"] == [s.name for s in expand(method, cfg)]
    ids, vectors = read_sets(ctx.path("features"))["cnn"]
    spec, _ = load_encoder(ctx.path("train"))
    assert vectors.shape == (metrics["features/items"], spec["dim"]) and spec["dim"] == DIMS["small"]
    assert len(set(ids)) == len(ids) == metrics["data/items"]  # every synthetic item has an image


@pytest.mark.slow
def test_every_stage_reports_names_it_declares_and_matches_its_key_metrics(method, whole_run):
    cfg, metrics, ctx = whole_run
    for stage in expand(method, cfg):
        emitted = ctx.results[stage.name].metrics
        strays = sorted(name for name in emitted if not declares(stage.metrics, name))
        assert not strays, f"{method.name}/{stage.name} reports outside {stage.metrics}: {strays[:5]}"
        for pattern in stage.key_metrics:
            assert any(fnmatch.fnmatchcase(name, pattern) for name in emitted), f"{stage.name}: {pattern}"


@pytest.mark.slow
def test_raising_the_rounds_reuses_the_earlier_rounds(ray_session, tmp_path_factory):
    method = METHODS["cfl"]
    run = _method_run("cfl", tmp_path_factory)  # clustering.rounds = 2
    more = load_config(run.experiment, [*run.overrides, "clustering.rounds=3"])
    metrics, again = run_experiment(method, more, run.out)
    assert again.results["round2"].reused and not again.results["round3"].reused
    assert again.results["train"].reused and "retrieval/cnn_r3/jaccard@10" in metrics


@pytest.mark.slow
def test_the_task_a_train_stage_trains_is_the_method_task(method, whole_run):
    cfg, _, ctx = whole_run
    trained = artifacts.read_json(ctx.path("train", "task.json"))
    assert trained == task_record(method.task(cfg))
