"""Stage outputs are data: a pickle with code in it runs nothing, and a damaged stage is recomputed."""

import os
import pathlib
import pickle

import pytest
import torch

from socialfeat import artifacts
from socialfeat.features.encoder import load_encoder, save_encoder

PACKAGE = pathlib.Path(artifacts.__file__).parent


class _Payload:
    """Unpickling this runs `touch <marker>`: what a writer of a shared stage store could plant."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_code_in_a_stage_directory_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    save_encoder(str(encoder), torch.nn.Linear(2, 2), {"architecture": "small"})
    with open(encoder / "encoder.pt", "wb") as handle:
        pickle.dump({"weight": _Payload(str(marker))}, handle)
    with pytest.raises(artifacts.UnsafeFile, match="encoder.pt: refused"):
        load_encoder(str(encoder))
    torch.save({"model": _Payload(str(marker))}, tmp_path / "state.pt")  # torch's own format, same payload
    with pytest.raises(artifacts.UnsafeFile, match="state.pt: refused"):
        artifacts.load_tensors(str(tmp_path / "state.pt"))
    assert not marker.exists()


def test_no_code_path_unpickles_what_a_run_reads():
    offenders = [
        f"{path.relative_to(PACKAGE)}: {needle}"
        for path in PACKAGE.rglob("*.py")
        for needle in ("weights_only=False", "pickle.load", "allow_pickle=True", "read_pickle")
        if needle in path.read_text()
    ]
    assert offenders == []


def _stage(store: artifacts.StageStore, calls: list) -> artifacts.StageResult:
    def compute(tmp: str) -> dict:
        calls.append(tmp)
        with open(os.path.join(tmp, "factors.npy"), "wb") as handle:
            handle.write(b"x" * 1000)
        return {"stage/value": 1.0}

    return store.run("factorization", {"dim": 4}, {"dataset": "k"}, compute)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda path: os.remove(path), "is missing"),
        (lambda path: os.truncate(path, 10), "has 10 bytes"),
        (lambda path: open(path, "r+b").write(b"y"), "changed since it was written"),
        (lambda path: open(path + ".extra", "w").write("z"), "was added"),
    ],
)
def test_a_damaged_stage_is_detected_reported_and_recomputed(tmp_path, caplog, damage, reason):
    store, calls = artifacts.StageStore(str(tmp_path / "stages")), []
    first = _stage(store, calls)
    assert _stage(store, calls).reused and len(calls) == 1
    damage(os.path.join(first.path, "factors.npy"))
    again = _stage(store, calls)
    assert not again.reused and len(calls) == 2 and again.path == first.path
    assert reason in caplog.text and "recomputing" in caplog.text
    assert os.path.getsize(os.path.join(again.path, "factors.npy")) == 1000
    assert sorted(os.listdir(tmp_path / "stages")) == [".locks", os.path.basename(first.path)]  # nothing set aside
