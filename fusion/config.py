"""Run configuration: the model, training and run options as dataclasses (the one place their
defaults live)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

TASKS = ("recommend", "related")
WARM_EPOCHS = 3  # a warm start's default epoch count (a cold one: TrainConfig.epochs)
# Above this many products the loss is a sampled softmax unless `num_negatives` says otherwise.
FULL_SOFTMAX_MAX_PRODUCTS = 50_000
AUTO_NEGATIVES = 4096  # random negatives per step of the automatic sampled softmax

# progress(step, done, total): how far a long step ("encoding", "propagating", "epoch",
# "validating") has come; the CLI draws it as progress bars, library code only calls it.
Progress = Callable[[str, int, int], None]


@dataclass
class FusedConfig:
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

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.num_negatives < -1:
            raise ValueError(
                f"num_negatives must be -1 (auto), 0 or more, got {self.num_negatives}"
            )
        if self.memory_budget <= 0:
            raise ValueError(f"memory_budget must be positive (GiB), got {self.memory_budget}")

    def negatives(self, num_products: int) -> int:
        """The sampled negatives per step (0 = full softmax) for a catalogue this size."""
        if self.num_negatives >= 0:
            return self.num_negatives
        return 0 if num_products <= FULL_SOFTMAX_MAX_PRODUCTS else AUTO_NEGATIVES

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
    # Time cap, checked after every step; and no epoch starts that would overrun it (by the
    # mean epoch time). Either way the epoch in progress is validated and the best kept.
    max_minutes: float = 20.0
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
