"""The words method's own config: the dictionary and the loss over it."""

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from socialfeat.config import ExperimentConfig, Strict


class VocabularyConfig(Strict):
    """The dictionary of the words method (Joulin et al.: drop the 500 most frequent, keep K = 1k..100k)."""

    size: PositiveInt = 1000  # K: words kept after the dropped ones (capped, with a warning, by the words found)
    drop_top: NonNegativeInt = 10  # the most frequent words left out (paper: 500, for 100M captions)
    sources: list[Literal["text", "tags", "comments"]] = Field(["text", "tags", "comments"], min_length=1)


class WordsConfig(Strict):
    # softmax: class-uniform sampling (the paper's best); sampled_softmax: the same over the batch's words only
    loss: Literal["softmax", "one_vs_all", "sampled_softmax"] = "softmax"
    negatives: int = Field(0, ge=0)  # sampled_softmax: words drawn uniformly per batch as extra negatives
    seed: int = 0  # the class-uniform draws


class Config(ExperimentConfig):
    vocabulary: VocabularyConfig = VocabularyConfig()
    words: WordsConfig = WordsConfig()

    @model_validator(mode="after")
    def _sparse_output_layer_trains(self):
        if self.words.loss != "sampled_softmax":
            return self
        if self.training.optimizer != "sgd":
            raise ValueError(
                f"words.loss sampled_softmax updates its output layer sparsely, which training.optimizer "
                f"{self.training.optimizer!r} cannot do: set training.optimizer: sgd"
            )
        if self.training.use_gpu and self.training.num_workers > 1:
            raise ValueError(  # torch 2.x: sparse all-reduce exists on gloo only
                "words.loss sampled_softmax has a sparse output-layer gradient, which NCCL cannot all-reduce "
                f"across training.num_workers = {self.training.num_workers} GPU workers: use one GPU worker, "
                "or words.loss softmax"
            )
        return self
