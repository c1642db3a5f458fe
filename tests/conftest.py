"""Shared fixtures: one Ray per test session, a small synthetic dataset, the imported MovieLens sample."""
import os

import pytest

from socialfeat.config import SynthConfig
from socialfeat.data.importers import import_movielens
from socialfeat.data.synthetic import generate

MOVIELENS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "movielens-posters")
SMALL_SYNTH = SynthConfig(users=300, items=400, styles=6, mean_views=25, seed=3, image_size=32)


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("synth") / "data")
    generate(SMALL_SYNTH, out)
    return out


@pytest.fixture(scope="session")
def movielens_dir(tmp_path_factory) -> str:
    if not os.path.isdir(MOVIELENS):
        pytest.skip(f"{MOVIELENS}: the shared MovieLens sample is not beside the project")
    out = str(tmp_path_factory.mktemp("movielens") / "data")
    import_movielens(f"{MOVIELENS}/ratings.csv", f"{MOVIELENS}/movies.csv", f"{MOVIELENS}/posters", out,
                     tags=f"{MOVIELENS}/tags.csv")
    return out
