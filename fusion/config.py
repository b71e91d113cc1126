"""Run configuration: the model, training and run options as frozen dataclasses (the one place
their defaults live), layered: these defaults < a `--config run.yaml` file < command-line flags."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError

from kg.errors import ConfigError, InvalidArgumentError
from kg.schema import PRODUCT_RELATIONS

TASKS = ("recommend", "related", "rank")  # rank: per-objective heads (docs/design.md)
# What a `rank` model predicts per (user, product): click (any interaction), cart, purchase,
# revenue (P(purchase) · price) and rating (a rating of 4 or more).
OBJECTIVES = ("click", "cart", "purchase", "revenue", "rating")
DEFAULT_OBJECTIVES = {"click": 1.0, "cart": 2.0, "purchase": 4.0}  # loss weights
CONVERSIONS = ("entire_space", "viewed_only")  # how cart/purchase/rating heads are trained
RELATIONS = tuple(str(rel).lower() for rel in PRODUCT_RELATIONS)  # what task=related learns
SPLITS = ("leave-last-out", "time")  # recommendation protocols
DERIVABLE = ("co_purchase", "co_view")  # relations `fusion.data.sideinfo` derives
WARM_EPOCHS = 3  # a warm start's default epoch count (a cold one: TrainConfig.epochs)
# Above this many products the loss is a sampled softmax unless `num_negatives` says otherwise.
FULL_SOFTMAX_MAX_PRODUCTS = 50_000
AUTO_NEGATIVES = 4096  # random negatives per step of the automatic sampled softmax

# progress(step, done, total): how far a long step ("encoding", "propagating", "epoch",
# "validating") has come; the CLI draws it as progress bars, library code only calls it.
Progress = Callable[[str, int, int], None]
# Unknown keys are errors; values are checked against the field types when a file is read.
_STRICT_KEYS = ConfigDict(extra="forbid")
# Section keys a run derives from a top-level option (`fusion.pipeline.train`): not settable.
DERIVED = {"model.task": "task", "model.text_model": "text_model", "train.device": "device"}


@dataclass(frozen=True)
class FusedConfig:
    __pydantic_config__ = _STRICT_KEYS

    task: str = "recommend"
    dim: int = 64
    dropout: float = 0.1
    item_id_embedding: bool = True  # transductive boost for products seen in training
    use_interactions: bool = False  # pass messages over user–product edges too
    max_history: int = 20
    # 0 = full softmax over all products, k > 0 = in-batch + k random negatives, -1 = auto:
    # full up to FULL_SOFTMAX_MAX_PRODUCTS products, else AUTO_NEGATIVES sampled.
    num_negatives: int = -1
    text_model: str = ""  # id of the text model that produced the text vectors
    # GiB one propagated feature matrix (products × (1 + metapaths) × text dim) may take in
    # memory: float32 if it fits, else float16, else float16 memory-mapped from a temporary
    # file (in $TMPDIR). 4 GiB: float32 up to ~270k products with 10 metapaths and 384-d text.
    memory_budget: float = 4.0
    # task=rank: loss weight per objective (also the default query-time weights), the way
    # conversion heads are trained (ESMM over the entire space, or on interacted pairs only),
    # mixture-of-experts towers (0: one tower per objective) and random negatives per target.
    objectives: dict[str, float] = field(default_factory=dict)
    conversion: str = "entire_space"
    experts: int = 0
    rank_negatives: int = 64
    # task=recommend: scores minus β·log(1 + the product's training interactions) — the
    # popularity a softmax model learns beyond what ranks a user's next product (logit
    # adjustment). None: β chosen on the validation users after training (0–1, steps of 0.1)
    # and recorded; 0: off.
    popularity_penalty: float | None = None

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.objectives:
            check_weights(self.objectives, "objectives")
        if self.conversion not in CONVERSIONS:
            raise InvalidArgumentError(
                f"conversion must be one of {CONVERSIONS}, got {self.conversion!r}"
            )
        if self.experts < 0 or self.rank_negatives < 1:
            raise InvalidArgumentError(
                f"experts must be >= 0 and rank_negatives >= 1, got {self.experts}, "
                f"{self.rank_negatives}"
            )
        if self.num_negatives < -1:
            raise InvalidArgumentError(
                f"num_negatives must be -1 (auto), 0 or more, got {self.num_negatives}"
            )
        penalty = self.popularity_penalty
        if penalty is not None and not 0 <= penalty < math.inf:
            raise InvalidArgumentError(
                f"popularity_penalty must be a finite number >= 0 or None, got {penalty}"
            )
        if self.memory_budget <= 0:
            raise InvalidArgumentError(
                f"memory_budget must be positive (GiB), got {self.memory_budget}"
            )

    def negatives(self, num_products: int) -> int:
        """The sampled negatives per step (0 = full softmax) for a catalogue this size."""
        if self.num_negatives >= 0:
            return self.num_negatives
        return 0 if num_products <= FULL_SOFTMAX_MAX_PRODUCTS else AUTO_NEGATIVES

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    __pydantic_config__ = _STRICT_KEYS

    epochs: int = 30  # the exact count when the split has no validation stage (cold start)
    batch_size: int = 4096
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 2  # epochs without validation improvement before stopping
    seed: int = 0
    device: str = "auto"
    cold_frac: float = 0.1  # products whose every edge is dropped per epoch (learn the text path)
    # Time cap, checked after every step; and no epoch starts that would overrun it (by the
    # mean epoch time). Either way the epoch in progress is validated and the best kept.
    max_minutes: float = 20.0
    metric: str = ""  # default: ndcg@10 (recommend), recall@20 (related)
    valid_queries: int = 4000  # validation queries sampled (fixed per run) for early stopping
    deterministic: bool = True  # bit-identical reruns for a seed (warns where CUDA cannot)
    # Warm starts: old targets replayed per new one, redrawn each epoch (docs/design.md).
    replay_ratio: float = 8.0


@dataclass(frozen=True)
class TrainOptions:
    __pydantic_config__ = _STRICT_KEYS

    task: str = "related"  # related | recommend
    relation: str = "also_bought"  # the Product→Product relation for task=related
    text_model: str | None = None  # None = bundled all-MiniLM-L6-v2
    device: str = "auto"
    # Product fields making the text that is encoded, in order (None: the text template's
    # default); `kgrec encode --text-fields` with the same value fills the same cache entries.
    text_fields: tuple[str, ...] | None = None
    # Checkpoint to continue from: trains on what is new since it plus a replay sample of the
    # old (`train.replay_ratio`), resuming its optimizer; `train.epochs` is WARM_EPOCHS unless set.
    warm_start: Path | None = None
    # Recommendation protocol: leave-last-out per user, or a global time cut (`cut`: a
    # timestamp, or a quantile of the interaction times within (0, 1); None: the last 10%).
    split: str = "leave-last-out"
    cut: float | None = None
    # Product→Product side information: the crawled relations kept (None: all, (): none) and
    # the relations derived from training interactions (co_purchase, co_view).
    relations: tuple[str, ...] | None = None
    derive: tuple[str, ...] = ()
    model: FusedConfig = field(default_factory=FusedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.task == "related" and self.relation not in RELATIONS:
            raise InvalidArgumentError(
                f"unknown relation {self.relation!r}; the graph has {', '.join(RELATIONS)}"
            )
        if self.model.objectives and self.task != "rank":
            raise InvalidArgumentError(f"objectives need task 'rank', not {self.task!r}")
        if self.split not in SPLITS:
            raise InvalidArgumentError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.split == "time" and self.task != "recommend":
            raise InvalidArgumentError("a time split is for task=recommend only")
        unknown = [r for r in self.relations or () if r not in RELATIONS]
        unknown += [r for r in self.derive if r not in DERIVABLE]
        if unknown:
            raise InvalidArgumentError(
                f"--relations/--derive: unknown relation(s) {unknown}: crawled ones are "
                f"{', '.join(RELATIONS)}, "
                f"derived ones {', '.join(DERIVABLE)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON-ready values (what a checkpoint records)."""
        record = asdict(self)
        record["warm_start"] = None if self.warm_start is None else str(self.warm_start)
        record["text_fields"] = None if self.text_fields is None else list(self.text_fields)
        record["relations"] = None if self.relations is None else list(self.relations)
        record["derive"] = list(self.derive)
        return record


def check_task(task: str) -> None:
    if task not in TASKS:
        raise InvalidArgumentError(f"task must be one of {TASKS}, got {task!r}")


def parse_weights(text: str, what: str = "weights") -> dict[str, float]:
    """`click=1,cart=2,purchase=4` as {objective: weight}; an unknown objective, a value that
    is not a number, a negative or repeated one, or nothing at all is an `InvalidArgumentError`
    naming it."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = (x.strip() for x in part.partition("="))
        if not sep:
            raise InvalidArgumentError(f"{what}: expected objective=number, got {part!r}")
        try:
            number = float(value)
        except ValueError:
            raise InvalidArgumentError(f"{what}: {name}={value!r} is not a number") from None
        if name in weights:
            raise InvalidArgumentError(f"{what}: {name!r} given twice")
        weights[name] = number
    check_weights(weights, what)
    return weights


def check_weights(weights: Mapping[str, float], what: str = "weights") -> None:
    """Known objectives, finite non-negative weights, at least one of them positive."""
    for name, value in weights.items():
        if name not in OBJECTIVES:
            raise InvalidArgumentError(
                f"{what}: unknown objective {name!r}; known: {', '.join(OBJECTIVES)}"
            )
        if not math.isfinite(value) or value < 0:
            raise InvalidArgumentError(f"{what}: {name}={value} must be a finite number >= 0")
    if not any(v > 0 for v in weights.values()):
        raise InvalidArgumentError(f"{what}: give at least one objective a positive weight")


def load_options(
    config_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainOptions:
    """`TrainOptions` from three layers: the dataclass defaults < `config_file` (YAML, keys as
    in `TrainOptions`, with `model:` and `train:` sections) < `overrides` (same nesting, e.g.
    the command line's flags). A warm start whose epoch count no layer sets trains
    `WARM_EPOCHS`. An unknown key or a wrongly typed value is a `ConfigError` naming both."""
    from_file = read_config_file(config_file) if config_file is not None else {}
    merged = _merge(from_file, overrides or {})
    for key, source in DERIVED.items():
        section, leaf = key.split(".")
        if isinstance(merged.get(section), Mapping) and leaf in merged[section]:
            in_file = isinstance(from_file.get(section), Mapping) and leaf in from_file[section]
            where = config_file if in_file else "command line"
            raise ConfigError(f"{where}: {key} follows {source!r}: set {source!r} instead")
    try:
        options = TypeAdapter(TrainOptions).validate_python(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, from_file, config_file)) from None
    if options.warm_start is not None and "epochs" not in merged.get("train", {}):
        options = replace(options, train=replace(options.train, epochs=WARM_EPOCHS))
    return options


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML run file holds (a missing file is an OSError naming it)."""
    with open(path, encoding="utf-8") as f:
        try:
            values = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"{path}: expected a mapping of option names, got {type(values).__name__}"
        )
    return values


def option_names() -> list[str]:
    """Every key a run file may set, dotted (`model.dim`, `train.epochs`, …)."""
    names = []
    for f in fields(TrainOptions):
        section = {"model": FusedConfig, "train": TrainConfig}.get(f.name)
        names += [f"{f.name}.{g.name}" for g in fields(section)] if section else [f.name]
    return [name for name in names if name not in DERIVED]


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError, from_file: Mapping[str, Any], path: str | Path | None) -> str:
    """Each problem as `[WHERE: ]KEY: what is wrong`, WHERE being the file or the command line,
    whichever layer set the value (no WHERE when there is no file)."""
    problems = []
    for error in exc.errors():
        loc, value = [str(part) for part in error["loc"]], error["input"]
        if error["type"] == "value_error":  # a check in __post_init__: find the value it names
            message = str(error["ctx"]["error"])
            given = value if isinstance(value, Mapping) else {}
            named = [k for k, v in given.items() if repr(v) in message][:1]
            loc, value = loc + named, given[named[0]] if named else None
        else:
            message = f"{error['msg']}, got {value!r}"
        key = ".".join(loc)
        node: Any = from_file
        for part in loc:  # whose layer set the value: the file, or the command line
            node = node.get(part) if isinstance(node, Mapping) else None
        where = str(path) if node is not None and node == value else "command line"
        where = f"{where}: " if path is not None else ""
        if error["type"] == "unexpected_keyword_argument":
            problems.append(f"{where}unknown key {key!r} (known: {', '.join(option_names())})")
        else:
            problems.append(f"{where}{key}: {message}" if key else f"{where}{message}")
    return "; ".join(problems)
