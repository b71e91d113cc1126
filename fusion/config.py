"""Run configuration: the model, training and run options as dataclasses (the one place their
defaults live)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from kgrec.errors import InvalidArgumentError

TASKS = ("recommend", "related")
WARM_EPOCHS = 3  # a warm start's default epoch count (a cold one: TrainConfig.epochs)


@dataclass
class FusedConfig:
    task: str = "recommend"
    dim: int = 64
    dropout: float = 0.1
    item_id_embedding: bool = True  # transductive boost for products seen in training
    use_interactions: bool = False  # pass messages over user–product edges too
    max_history: int = 20
    num_negatives: int = 0  # 0 = full softmax over all products
    text_model: str = ""  # id of the text model that produced the text vectors

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidArgumentError(f"task must be one of {TASKS}, got {self.task!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainConfig:
    epochs: int = 30  # the exact count when the split has no validation stage (cold start)
    batch_size: int = 4096
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 2  # epochs without validation improvement before stopping
    seed: int = 0
    device: str = "auto"
    cold_frac: float = 0.1  # products whose every edge is dropped per epoch (learn the text path)
    max_minutes: float = 20.0  # budget: no epoch starts that would overrun it (by mean epoch time)
    metric: str = ""  # default: ndcg@10 (recommend), recall@20 (related)
    valid_queries: int = 4000  # validation queries sampled (fixed per run) for early stopping
    deterministic: bool = True  # bit-identical reruns for a seed (warns where CUDA cannot)
    # Warm starts: old targets replayed per new one, redrawn each epoch (docs/design.md).
    replay_ratio: float = 8.0


@dataclass
class TrainOptions:
    task: str = "related"  # related | recommend
    relation: str = "also_bought"  # the Product→Product relation for task=related
    text_model: str | None = None  # None = bundled all-MiniLM-L6-v2
    device: str = "auto"
    # Checkpoint to continue from: trains on what is new since it plus a replay sample of the
    # old (`train.replay_ratio`), resuming its optimizer; set `train.epochs` small (WARM_EPOCHS).
    warm_start: Path | None = None
    model: FusedConfig = field(default_factory=FusedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
