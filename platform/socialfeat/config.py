"""Typed experiment configs: the defaults live here, YAML and `--set key=value` override them."""

import copy
import re
import types
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Literal, Union, get_args, get_origin

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from socialfeat.architectures import TAPS
from socialfeat.errors import UserError

Fraction = Field(ge=0.0, le=1.0)


def _holds(annotation, kinds: tuple) -> bool:
    """Whether a field holds only values of `kinds` (maybe constrained, maybe optional)."""
    if get_origin(annotation) is Annotated:
        return _holds(get_args(annotation)[0], kinds)
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        return bool(members) and all(_holds(a, kinds) for a in members)
    return annotation in kinds


class Strict(BaseModel):
    """A config section: unknown keys are errors, assignments are validated, and a boolean is never read as
    a number nor a number a boolean (pydantic's lax mode would take `true` for 1 and 1 for `true`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, value, info):
        annotation = cls.model_fields[info.field_name].annotation
        boolean = isinstance(value, (bool, np.bool_))  # a sweep's sampler may give numpy scalars
        if boolean and _holds(annotation, (int, float)):
            raise ValueError("expected a number, not a boolean")
        if value is not None and not boolean and _holds(annotation, (bool,)):
            raise ValueError("expected true or false")
        return value


class SynthConfig(Strict):
    users: PositiveInt = 800
    items: int = Field(1200, ge=10)
    styles: int = Field(8, ge=2, le=20)
    seed: int = 0
    mean_views: PositiveFloat = 40.0
    min_views: PositiveInt = 5
    zipf_exponent: NonNegativeFloat = 0.8
    explore: float = Field(0.05, ge=0.0, le=1.0)
    owner_affinity: float = Field(0.9, ge=0.0, le=1.0)
    concepts_per_style: PositiveInt = 3
    noise_words: PositiveInt = 200
    noise_words_per_text: PositiveInt = 2  # at most this many noise words in an item's text (1 or more)
    foreign_fraction: float = Field(0.2, ge=0.0, le=1.0)
    tag_probability: float = Field(0.15, ge=0.0, le=1.0)
    noise_tag_probability: float = Field(0.2, ge=0.0, le=1.0)
    comment_probability: float = Field(0.1, ge=0.0, le=1.0)  # views that leave a comment
    owner_post_probability: float = Field(0.0, ge=0.0, le=1.0)  # items their owner posts with hashtags
    friends_per_user: NonNegativeInt = 3
    friend_affinity: float = Field(0.8, ge=0.0, le=1.0)
    image_size: int = Field(64, ge=16, le=1024)
    shards: PositiveInt = 1  # files per table: 1 writes items.parquet, N a folder items/ of N Parquet shards


class DataConfig(Strict):
    path: str | None = None  # a dataset directory (or URI); None: synthesise one into the run
    synth: SynthConfig = SynthConfig()


class FilterConfig(Strict):
    """Popularity filters of Fang et al. (paper: 10 and 20000 for users and items)."""

    min_user_interactions: NonNegativeInt = 5
    max_user_interactions: PositiveInt = 20000
    min_item_interactions: NonNegativeInt = 5
    max_item_interactions: PositiveInt = 20000
    until_stable: bool = True  # re-apply until nothing changes; False: one pass
    require_image: bool = False  # keep only items with an image (a CNN stage needs one per item)


class SplitConfig(Strict):
    test_fraction: float = Field(0.05, gt=0.0, lt=1.0)  # items held out of factorisation (te)
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)  # tr's observed entries held out for validation
    seed: int = 0


class SamplingConfig(Strict):
    ratio: PositiveFloat = 2.0  # negatives per positive, per user
    seed: int = 0
    ray_min_positives: NonNegativeInt = 2_000_000  # shard over users with Ray Data from this log size


# What each engine reads, at the values measured to work for it (benchmarks/factorization.py): lambda
# is unscaled in als / sgd and per entry in implicit's engines, and BPR needs ~7x the epochs.
ENGINE_DEFAULTS = {
    "als": {"reg": 5.0, "epochs": 15},
    "sgd": {"reg": 5.0, "epochs": 15, "learning_rate": 0.05},
    "implicit_als": {"reg": 1.0, "epochs": 15, "alpha": 1.0},
    "implicit_bpr": {"reg": 0.01, "epochs": 105, "learning_rate": 0.01},
}


class FactorizationConfig(Strict):
    """Keys an experiment leaves unset take the engine's defaults (ENGINE_DEFAULTS), so `--set
    factorization.engine=...` never carries one engine's lambda or epochs into another."""

    engine: Literal["als", "sgd", "implicit_als", "implicit_bpr"] = "als"
    dim: int = Field(32, ge=1, le=4096)  # d (paper: 100s); memory is checked against the data too
    reg: NonNegativeFloat = 5.0
    epochs: PositiveInt = 15
    learning_rate: PositiveFloat = 0.05  # sgd and implicit_bpr
    alpha: PositiveFloat = 1.0  # implicit_als confidence scale
    cg_steps: NonNegativeInt = 3  # als on a CPU: CG steps per row update; 0 = the exact solve (as on a GPU)
    seed: int = 0
    eval_max_users: PositiveInt = 2000  # users ranked against all unseen items (a seeded sample)
    neighbours: PositiveInt = 10  # latent-factor neighbours per tr item (Fig. 4 analysis)

    @model_validator(mode="after")
    def _engine_defaults(self):
        for key, value in ENGINE_DEFAULTS[self.engine].items():
            if key not in self.model_fields_set:
                # bypasses validate_assignment and keeps the key unset, so a dump with exclude_unset
                # (sweep trials) lets another engine choose its own
                object.__setattr__(self, key, value)
        return self


class TrainingConfig(Strict):
    """The CNN on pseudo classes (Fang et al. 2015, section 2.2), trained with Ray Train."""

    model: Literal["small", "alexnet", "resnet18", "resnet50"] = "small"
    tap: str = "penultimate"  # feature layer: alexnet fc6 / fc7, others penultimate
    objective: Literal["pseudo_class", "latent_cosine", "latent_l2"] = "pseudo_class"
    class_balanced: bool = False  # weight the loss by inverse pseudo-class frequency
    image_size: PositiveInt = 72  # short side resized to this and centre-cropped square (paper: 256)
    crop_size: PositiveInt = 64  # random crops when training, centre crop otherwise (paper: 224)
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 64
    optimizer: Literal["sgd", "adamw"] = "adamw"
    learning_rate: PositiveFloat = 2e-3
    weight_decay: NonNegativeFloat = 5e-4
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    warmup_epochs: NonNegativeInt = 1
    holdout_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # tr items held out for top-1 / top-5
    num_workers: PositiveInt = 1
    cpus_per_worker: PositiveFloat = 2  # fractions let a sweep trial's Ray Data share a small machine
    use_gpu: bool = False
    # where the workers' bundles go: PACK fills a node first; SPREAD / STRICT_SPREAD one worker per node
    # (STRICT_SPREAD waits for enough nodes rather than doubling up)
    placement: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    max_failures: NonNegativeInt = 2  # worker crashes survived (resuming from the last checkpoint)
    seed: int = 0

    @model_validator(mode="after")
    def _crop_and_tap(self):
        if self.crop_size > self.image_size:
            raise ValueError(f"crop_size {self.crop_size} is larger than image_size {self.image_size}")
        if self.tap not in TAPS[self.model]:
            raise ValueError(f"tap {self.tap!r} does not exist for {self.model}; choose from {TAPS[self.model]}")
        return self


class FeaturesConfig(Strict):
    batch_size: PositiveInt = 128
    concurrency: PositiveInt = 1  # extraction actors
    random_cnn: bool = True  # also extract with the same architecture randomly initialised
    neighbours: PositiveInt = 10


class EvaluationConfig(Strict):
    """What the evaluation compares beyond the run's own features (Fang et al. 4.3, 4.4)."""

    ranks: int = Field(100, ge=1, le=1000)  # neighbours per te query: Jaccard at ranks 1..ranks
    coldstart_max_users: PositiveInt = 10_000  # cold start scores a seeded sample of at most this many users
    feature_files: dict[str, str] = {}  # name -> parquet of (item_id, vector), e.g. features of another model
    weights: str | None = None  # a torchvision state dict for training.model (torch.load(weights_only=True))

    @model_validator(mode="after")
    def _names(self):
        taken = {"cnn", "random_cnn", "color_hist", "pixels", "latent", "random", "weights"}
        clash = sorted(taken & set(self.feature_files))
        if clash:
            raise ValueError(f"feature_files names {clash} are taken by built-in feature sets")
        return self


class ImagesConfig(Strict):
    """Limits on what one image reference may cost (see ImagePolicy in data/images.py)."""

    max_bytes: int = Field(32 << 20, ge=1024)  # a larger file is refused (counted, never read into memory)


class RayConfig(Strict):
    address: str | None = None  # None: RAY_ADDRESS if set, else a local Ray on this machine
    num_cpus: PositiveInt | None = None
    resource_wait_s: NonNegativeFloat = 600.0  # on a joined (maybe autoscaling) cluster: how long training may
    # wait for nodes that can hold its workers; a local Ray never grows, so there the check fails at once
    shared_filesystem: bool = False  # --out lies on a filesystem every node mounts (NFS): a local path then
    # serves a cluster of several nodes, which otherwise needs --out in object storage


class ExperimentConfig(Strict):
    """The sections every method shares; a method's config (its folder's config.py) adds its own."""

    name: str = "cfl_local"
    method: str = "cfl"  # a key of the methods registry (the CLI and the sweep look it up)
    data: DataConfig = DataConfig()
    filter: FilterConfig = FilterConfig()
    split: SplitConfig = SplitConfig()
    sampling: SamplingConfig = SamplingConfig()
    factorization: FactorizationConfig = FactorizationConfig()
    training: TrainingConfig = TrainingConfig()
    features: FeaturesConfig = FeaturesConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    images: ImagesConfig = ImagesConfig()
    ray: RayConfig = RayConfig()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # the default run directory is runs/<name>: a name must not be able to point anywhere else
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError("a name is letters, digits, '.', '_' and '-', starting with a letter or digit")
        return value


def safe_name(text: str, fallback: str = "run") -> str:
    """`text` (a path's last part, say) as a valid config name: accents dropped, any other character
    outside letters, digits, '.', '_' and '-' made '_'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_text).lstrip("._-")
    return name or fallback


class ConfigError(UserError):
    """A config that cannot be used; the message names every offending key."""


class UndeclaredRead(AttributeError):
    """A stage read a config key it does not declare: its cache key would not see that key change."""


def covers(declared: frozenset[str] | set[str], path: str) -> bool:
    """Whether declaring `declared` lets a stage read `path` (a declared section covers its keys)."""
    parts = path.split(".")
    return any(".".join(parts[:n]) in declared for n in range(1, len(parts) + 1))


class ConfigView:
    """A read-only view of a config that lets a stage read only the keys it declares. A declared key (or a
    section wholly declared) comes back as a copy; a section some of whose keys are declared, as a view."""

    __slots__ = ("_model", "_allowed", "_owner", "_prefix")

    def __init__(self, model: BaseModel, allowed: frozenset[str], owner: str, prefix: str = ""):
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_allowed", frozenset(allowed))
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_prefix", prefix)

    def __reduce__(self):  # a view travels to Ray tasks as what it is
        return ConfigView, (self._model, self._allowed, self._owner, self._prefix)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        path = self._prefix + name
        if name not in type(self._model).model_fields:
            raise AttributeError(f"config section '{self._prefix.rstrip('.') or 'experiment'}' has no key {name!r}")
        value = getattr(self._model, name)
        if covers(self._allowed, path):
            return copy.deepcopy(value) if isinstance(value, (BaseModel, list, dict)) else value
        if isinstance(value, BaseModel) and any(key.startswith(path + ".") for key in self._allowed):
            return ConfigView(value, self._allowed, self._owner, path + ".")
        raise UndeclaredRead(
            f"stage {self._owner!r} read config key '{path}', which it does not declare "
            f"(it declares: {', '.join(sorted(self._allowed)) or 'nothing'}); add it to the stage's reads"
        )

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"stage {self._owner!r}: the config is read-only inside a stage ({self._prefix}{name})")

    def model_dump(self, **kwargs) -> dict:
        section = self._prefix.rstrip(".")
        raise UndeclaredRead(
            f"stage {self._owner!r} dumped config section '{section}', of which it declares only some keys"
        )


def declared_values(cfg: BaseModel, reads: tuple[str, ...], unkeyed: tuple[str, ...] = ()) -> dict:
    """{declared key: its value} (a section as a dict), leaving out the `unkeyed` keys inside sections."""
    values = {}
    for path in reads:
        value = cfg
        for part in path.split("."):
            if not isinstance(value, BaseModel) or part not in type(value).model_fields:
                raise KeyError(f"'{path}' is not a config key")
            value = getattr(value, part)
        if isinstance(value, BaseModel):
            value = _dump_without(value, path, unkeyed)
        values[path] = value
    return values


def _dump_without(section: BaseModel, path: str, unkeyed: tuple[str, ...]) -> dict:
    dumped = section.model_dump(mode="json")
    for key in unkeyed:
        if key.startswith(path + "."):
            node = dumped
            *parents, last = key[len(path) + 1 :].split(".")
            for part in parents:
                node = node[part]
            node.pop(last)
    return dumped


def _section_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        annotation = model.model_fields.get(part).annotation if part in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def _describe(error: dict, source: str, model: type[BaseModel]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        valid = ", ".join(_section_keys(model, error["loc"][:-1]))
        return f"{source}: config key '{key}' is unknown (valid keys here: {valid})"
    if not key:  # a check across sections: its message names the keys
        return f"{source}: {error['msg'].removeprefix('Value error, ')}"
    return f"{source}: config key '{key}': {error['msg'].removeprefix('Value error, ')} (got {error.get('input')!r})"


def set_dotted(raw: dict, key: str, value) -> None:
    """Set raw['a']['b'] = value for key 'a.b', creating sections on the way."""
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, object]:
    """'a.b=value' -> ('a.b', value parsed as YAML, so 3 is an int and null is None)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected dotted.key=value")
    try:
        return key.strip(), yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        reason = str(error).splitlines()[0]
        raise ConfigError(f"--set {key.strip()}: value {value!r} is not valid YAML ({reason}); quote it") from None


def config_class(raw: dict, source: str, configs: Mapping[str, type[ExperimentConfig]] | None) -> type:
    """The config class of the method `raw` names (the shared sections alone without a registry)."""
    name = raw.get("method", ExperimentConfig.model_fields["method"].default)
    if configs is None:
        return ExperimentConfig
    if not isinstance(name, str) or name not in configs:
        raise ConfigError(f"{source}: config key 'method': unknown method {name!r}; methods: {', '.join(configs)}")
    return configs[name]


def build_config(
    raw: dict, source: str = "config", configs: Mapping[str, type[ExperimentConfig]] | None = None
) -> ExperimentConfig:
    """`raw` validated by the config class of the method it names (`configs`: the registry's classes)."""
    model = config_class(raw, source, configs)
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise ConfigError("\n".join(_describe(e, source, model) for e in error.errors())) from None


def load_config(
    path: str | None = None, overrides: list[str] = (), configs: Mapping[str, type[ExperimentConfig]] | None = None
) -> ExperimentConfig:
    """The experiment at `path` (defaults when None) with `key=value` overrides applied, validated by the
    config class of the method it names."""
    raw: dict = {}
    if path is not None:
        try:
            with open(path) as handle:
                raw = yaml.safe_load(handle) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: experiment file does not exist") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a directory; expected an experiment YAML file") from None
        except (PermissionError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot be read as an experiment YAML file ({error})") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: an experiment file must be a mapping of sections")
    for text in overrides:
        set_dotted(raw, *parse_override(text))
    return build_config(raw, path or "defaults", configs)


def to_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
