"""The comparative method's own config: likes, user bags, triplets and the dual net."""

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from socialfeat.config import ExperimentConfig, Strict


class ComparativeConfig(Strict):
    """The comparative method (Lei et al. 2016): likes, user bags of tag clusters, triplets and the dual net."""

    # cdl: triplets, cross-entropy on the distance difference; cdl_hinge: the same with a hinge; twonets: doublets
    model: Literal["cdl", "cdl_hinge", "twonets"] = "cdl"
    like_min: float | None = None  # interactions.value at least this is a like (MovieLens: 4); None: every one
    concealed: PositiveInt = 20  # liked items hidden per test user and ranked among the candidates (paper 20)
    candidates: PositiveInt = 100  # the candidates a test user ranks: the concealed likes and other items
    test_users: float = Field(0.2, gt=0.0, le=1.0)  # share of the users with enough likes that are test users
    min_train_likes: PositiveInt = 5  # a test user keeps at least this many likes to learn from
    min_tag_items: PositiveInt = 2  # a tag is kept when it is on this many items (co-occurrence needs two)
    item_text: bool = False  # an item's tags include the words of its text
    tag_embeddings: Literal["ppmi", "words"] = "ppmi"  # words: the output layer of the words run `words_run`
    words_run: str | None = None  # a finished words run directory (tag_embeddings: words)
    tag_dim: PositiveInt = 64  # the PPMI-SVD tag embedding
    tag_clusters: int = Field(64, ge=2)  # k-means clusters of the tag embeddings: a bag's length (paper 1024)
    triplets_per_user: PositiveInt = 20  # (paper 20)
    negatives: Literal["social", "popularity", "uniform"] = "social"  # how a triplet's other image is drawn
    dim: PositiveInt = 64  # d: the joint space (paper 1024)
    hidden: PositiveInt = 256  # the user MLP's hidden layer
    dropout: float = Field(0.1, ge=0.0, lt=1.0)  # on the distance layer's terms (the paper gives no rate)
    margin: PositiveFloat = 1.0  # cdl_hinge
    seed: int = 0  # test users, concealed likes, candidates, triplets, k-means

    @model_validator(mode="after")
    def _candidates_hold_the_concealed(self):
        if self.candidates <= self.concealed:
            raise ValueError(
                f"comparative.candidates ({self.candidates}) must exceed comparative.concealed ({self.concealed}): "
                "a test user ranks the concealed likes among other items"
            )
        if self.tag_embeddings == "words" and not self.words_run:
            raise ValueError("comparative.tag_embeddings: words reads a words run: set comparative.words_run")
        return self


class Config(ExperimentConfig):
    comparative: ComparativeConfig = ComparativeConfig()
