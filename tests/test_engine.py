"""The stage engine keeps its promises: a stage is reused exactly when the config keys it declares, its inputs
and its code are the same; an undeclared config read or file fails loudly."""

import importlib
import os
import shutil
import sys
import textwrap

import pytest

from socialfeat.config import ConfigError, ConfigView, UndeclaredRead
from socialfeat.fingerprint import code_fingerprint, code_parts
from socialfeat.methods import METHODS, load_config
from socialfeat.pipeline.common import DATA
from socialfeat.stages import Method, Stage, UndeclaredOutput, plan_keys, run_experiment

SYNTH = ["data.synth.users=120", "data.synth.items=80", "data.synth.image_size=16"]


def _method(*stages: Stage) -> Method:
    return Method("toy", "a test graph", (DATA, *stages), tasks=lambda cfg: {})


def test_a_view_gives_declared_keys_and_refuses_the_rest():
    cfg = load_config(None, [])
    view = ConfigView(cfg, frozenset({"split.seed", "training"}), "peek")
    assert view.split.seed == cfg.split.seed and view.training.epochs == cfg.training.epochs
    with pytest.raises(UndeclaredRead, match=r"stage 'peek' read config key 'split.test_fraction'"):
        _ = view.split.test_fraction
    with pytest.raises(UndeclaredRead, match="'filter'"):
        _ = view.filter
    with pytest.raises(UndeclaredRead, match="dumped config section 'split'"):
        view.split.model_dump()
    with pytest.raises(AttributeError, match="read-only"):
        view.split.seed = 3
    copy = view.training
    copy.epochs = 99  # a declared section comes back as a copy: the run's config is untouched
    assert cfg.training.epochs != 99


def test_an_undeclared_config_read_fails_the_stage_loudly(tmp_path):
    peek = Stage("peek", ("data",), ("split.seed",), lambda ctx, tmp: {"peek/epochs": ctx.cfg.training.epochs})
    with pytest.raises(UndeclaredRead, match="stage 'peek' read config key 'training', which it does not declare"):
        run_experiment(_method(peek), load_config(None, SYNTH), str(tmp_path / "run"))


def test_outputs_are_declared_and_read_through_the_engine(tmp_path):
    def write(ctx, tmp):
        open(f"{tmp}/table.txt", "w").write("x")
        return {}

    writer = Stage("writer", ("data",), (), write, outputs=("table.txt",))
    sloppy = Stage("sloppy", ("data",), (), write, outputs=("other.txt",))
    with pytest.raises(UndeclaredOutput, match=r"stage 'sloppy' wrote \['table.txt'\] and left out \['other.txt'\]"):
        run_experiment(_method(sloppy), load_config(None, SYNTH), str(tmp_path / "a"))
    peeker = Stage("peeker", ("writer",), (), lambda ctx, tmp: {"n": len(ctx.path("writer", "secret.txt"))})
    with pytest.raises(UndeclaredOutput, match="opened 'secret.txt' of stage 'writer', which does not declare it"):
        run_experiment(_method(writer, peeker), load_config(None, SYNTH), str(tmp_path / "b"))
    stranger = Stage("stranger", ("data",), (), lambda ctx, tmp: {"n": len(ctx.path("writer", "table.txt"))})
    with pytest.raises(UndeclaredOutput, match="read stage 'writer', which is not among its inputs"):
        run_experiment(_method(writer, stranger), load_config(None, SYNTH), str(tmp_path / "c"))


def test_the_hashtags_tagging_stage_is_keyed_by_split_seed():
    # tagging reads split.seed for its intervals, but none of its inputs depends on the split
    method = METHODS["hashtags"]
    keys = plan_keys(method, load_config(None, ["method=hashtags"]), "dataset")
    moved = plan_keys(method, load_config(None, ["method=hashtags", "split.seed=7"]), "dataset")
    assert moved["tagging"] != keys["tagging"] and moved["posts"] == keys["posts"] and moved["train"] == keys["train"]


def test_unkeyed_settings_and_other_methods_keys_move_nothing():
    method = METHODS["cfl"]
    cfg = load_config(None, [])
    keys = plan_keys(method, cfg, "dataset")
    assert plan_keys(method, load_config(None, ["sampling.ray_min_positives=5"]), "dataset") == keys
    with pytest.raises(ConfigError, match="config key 'vocabulary' is unknown"):  # another method's section
        load_config(None, ["vocabulary.size=7"])
    rounds = plan_keys(method, load_config(None, ["clustering.rounds=3"]), "dataset")
    assert {"round2", "round3"} <= set(rounds) and rounds["train"] == keys["train"]
    assert plan_keys(method, load_config(None, ["clustering.rounds=2"]), "dataset")["round2"] == rounds["round2"]


TOY = """
def helper():
    return {"toy/value": 1}


def unrelated():
    return "not run by any stage"


def first(ctx, tmp):
    return {"toy/first": 1}


def second(ctx, tmp):
    return helper()
"""


def _load(path, source: str):
    path.write_text(textwrap.dedent(source))
    # a rewrite of the same size within the same second passes Python's check of the cached bytecode
    shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)
    sys.modules.pop("toy_stages", None)
    importlib.invalidate_caches()
    return importlib.import_module("toy_stages")


def test_an_edited_stage_body_is_recomputed_and_what_it_does_not_run_is_not(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    module_file = tmp_path / "toy_stages.py"

    def run(module) -> dict:
        method = _method(Stage("first", ("data",), (), module.first), Stage("second", ("first",), (), module.second))
        metrics, ctx = run_experiment(method, load_config(None, SYNTH), str(tmp_path / "run"))
        return {name: result.reused for name, result in ctx.results.items()} | {"value": metrics["toy/value"]}

    assert run(_load(module_file, TOY))["value"] == 1
    untouched = run(_load(module_file, TOY.replace("not run by any stage", "edited, still not run")))
    assert untouched["second"] and untouched["first"]  # an edit to code no stage runs reuses everything
    edited = run(_load(module_file, TOY.replace('{"toy/value": 1}', '{"toy/value": 22}')))
    assert edited["value"] == 22 and not edited["second"] and edited["first"]  # upstream kept


def test_the_fingerprint_follows_what_a_stage_runs():
    from socialfeat.methods.cfl import stages as cfl_stages
    from socialfeat.pipeline import factorization as stages

    factorization = code_parts(stages.factorization)
    assert "socialfeat.factorization.mf:fit_entries" in factorization
    assert "socialfeat.factorization.engines:fit_als" in factorization  # through the engine registry
    assert not any("training" in name for name in factorization)  # training code does not key it
    sampling = code_parts(stages.sampling)
    assert "socialfeat.factorization.sampling:negative_blocks" in sampling
    assert "socialfeat.factorization.entry_file:write_entries" in sampling
    assert "socialfeat.factorization.entry_file:read_entries" in factorization
    assert code_fingerprint(stages.factorization) != code_fingerprint(cfl_stages.clusters)


def test_every_stage_key_is_the_same_in_every_process():
    # Python salts str hashes per process, so a walk that depended on set order (the generated __repr__ of two
    # dataclasses in one module shared a name) keyed the same code differently in two runs: nothing reused
    import subprocess

    script = (
        "from socialfeat.methods import METHODS, load_config\n"
        "from socialfeat.stages import plan_keys, read_dataset\n"
        "from socialfeat.fingerprint import code_fingerprint\n"
        "print(code_fingerprint(read_dataset))  # in the dataset's key\n"
        "for name, method in sorted(METHODS.items()):\n"
        "    print(name, sorted(plan_keys(method, load_config(None, [f'method={name}']), 'd').items()))\n"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True
        ).stdout
        for seed in ("1", "2")  # two seeds that ordered the walk differently
    }
    assert len(keys) == 1 and "cfl" in next(iter(keys))
