"""The hashtags method's own config: posts, the hashtag vocabulary and the tagging models."""

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from socialfeat.config import ExperimentConfig, Strict


class HashtagsConfig(Strict):
    """The hashtags method (Veit et al. 2018): posts, the hashtag vocabulary and the tagging models."""

    # tensor: user-specific three-way tensor; mlp: user-specific MLP on the three embeddings concatenated;
    # mcll: user-agnostic softmax (class-uniform); ncsl: user-agnostic regression onto PPMI-SVD tag embeddings
    model: Literal["tensor", "mlp", "mcll", "ncsl"] = "tensor"
    min_users: PositiveInt = 3  # a hashtag is kept when this many distinct users used it (train posts)
    max_tags_per_post: PositiveFloat = 15  # the spam filter: users averaging more tags per post are dropped
    train_fraction: float = Field(0.9, gt=0.0, lt=1.0)  # each user's earliest posts in train
    image_dim: PositiveInt = 300  # D: the image embedding (paper 300)
    tag_dim: PositiveInt = 300  # F: the hashtag embedding (paper 300; ncsl: the PPMI-SVD dimension)
    user_dim: PositiveInt = 50  # E: the user embedding (paper 50)
    hidden: PositiveInt = 256  # mlp: its hidden layer
    sparse: bool = False  # user and hashtag tables with sparse gradients (needs training.optimizer sgd)
    seed: int = 0  # class-uniform draws (mcll), in-batch random negatives


class Config(ExperimentConfig):
    hashtags: HashtagsConfig = HashtagsConfig()

    @model_validator(mode="after")
    def _sparse_tables_train(self):
        if not self.hashtags.sparse:
            return self
        if self.training.optimizer != "sgd":
            raise ValueError(
                "hashtags.sparse gives the user and hashtag tables sparse gradients, which training.optimizer "
                f"{self.training.optimizer!r} cannot update: set training.optimizer: sgd"
            )
        if self.training.use_gpu and self.training.num_workers > 1:
            raise ValueError(  # torch 2.x: sparse all-reduce exists on gloo only
                "hashtags.sparse gives the tables sparse gradients, which NCCL cannot all-reduce across "
                f"training.num_workers = {self.training.num_workers} GPU workers: set hashtags.sparse: false"
            )
        return self
