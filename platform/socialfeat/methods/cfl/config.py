"""cfl's own config: the k-means pseudo classes (and the rounds that re-cluster them)."""

from pydantic import Field, NonNegativeFloat, PositiveInt

from socialfeat.config import ExperimentConfig, Strict


class ClusteringConfig(Strict):
    k: int = Field(16, ge=2)  # pseudo classes (paper: 200..5000, best 2000 on 1.9M items)
    iterations: PositiveInt = 25
    normalize: bool = True  # L2-normalise factors first: cosine geometry, as retrieval uses
    whiten: bool = False  # PCA-whiten factors first
    seed: int = 0
    # rounds 2..R (the rounds stage) re-cluster tr items on [CNN features, item factors], each L2-normalised and
    # weighted, into K pseudo classes and train the CNN again from the previous round's weights
    rounds: PositiveInt = 1
    feature_weight: NonNegativeFloat = 1.0
    factor_weight: NonNegativeFloat = 1.0
    # epochs of each round 2..R; None: training.epochs. A warm-started tower needs fewer than round 1's
    round_epochs: PositiveInt | None = None


class Config(ExperimentConfig):
    clustering: ClusteringConfig = ClusteringConfig()
