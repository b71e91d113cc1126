"""`kgrec train | evaluate | pipeline`: fit the fused model on the store's graph, measure it
against the baselines on the same split, or run build → train → evaluate → query in one go."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

from fusion.cli.build_cmd import summary_table
from fusion.cli.common import (
    DEFAULT_CHECKPOINT,
    Checkpoint,
    StoreUri,
    err,
    progress_bars,
    user_errors,
)
from fusion.cli.query_cmd import show
from fusion.config import RELATIONS, TASKS, WARM_EPOCHS, TrainOptions, load_options

TASK_HELP = "related: Product→Product links; recommend: User→Product."
Task = Annotated[Literal[TASKS], typer.Option(help=TASK_HELP)]
Relation = Annotated[
    str, typer.Option(help=f"Product relation to learn for --task related: {', '.join(RELATIONS)}.")
]
Epochs = Annotated[
    int,
    typer.Option(
        min=1, help=f"Most epochs (early stopping may end sooner); warm start: {WARM_EPOCHS}."
    ),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
TextModel = Annotated[
    str | None,
    typer.Option(help="Hugging Face model id or local path (default: bundled all-MiniLM-L6-v2)."),
]
TextFields = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated product fields making the encoded text, in order (default: the "
        "text template's); the same value as `kgrec encode --text-fields` reuses its vectors."
    ),
]
MaxMinutes = Annotated[float, typer.Option(min=0.1, help="Training time cap in minutes.")]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        exists=True,
        dir_okay=False,
        help="YAML run file with TrainOptions keys (model:, train: sections); flags override it.",
    ),
]
DEFAULT_REPORT = Path("artifacts/evaluation.json")
DEFAULTS = TrainOptions()
# Each option flag → its key in `TrainOptions` (dotted: in the model/train sections).
OPTION_KEYS = {
    "task": "task",
    "relation": "relation",
    "text_model": "text_model",
    "text_fields": "text_fields",
    "device": "device",
    "warm_start": "warm_start",
    "dim": "model.dim",
    "epochs": "train.epochs",
    "seed": "train.seed",
    "max_minutes": "train.max_minutes",
    "replay_ratio": "train.replay_ratio",
}


def train(
    ctx: typer.Context,
    config: ConfigFile = None,
    task: Task = DEFAULTS.task,
    relation: Relation = DEFAULTS.relation,
    epochs: Epochs = DEFAULTS.train.epochs,
    device: Device = DEFAULTS.device,
    text_model: TextModel = DEFAULTS.text_model,
    text_fields: TextFields = None,
    dim: Annotated[int, typer.Option(min=8, help="Embedding size.")] = DEFAULTS.model.dim,
    seed: Annotated[int, typer.Option(help="Random seed (splits use seed 0).")] = (
        DEFAULTS.train.seed
    ),
    max_minutes: MaxMinutes = DEFAULTS.train.max_minutes,
    warm_start: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            help="Continue from this checkpoint (same text model and task; new nodes allowed), "
            "training on what is new since it plus a replay sample of the old, resuming its "
            "optimizer.",
        ),
    ] = DEFAULTS.warm_start,
    replay_ratio: Annotated[
        float,
        typer.Option(min=0.0, help="Warm start: old targets replayed per new one, each epoch."),
    ] = DEFAULTS.train.replay_ratio,
    metrics_csv: Annotated[
        Path | None, typer.Option(help="Also write each epoch's metrics to this CSV file.")
    ] = None,
    store: StoreUri = None,
    out: Checkpoint = DEFAULT_CHECKPOINT,
) -> None:
    """Train the GNN and the text/graph fusion layer jointly; held-out edges never reach
    training; the best validation epoch is checkpointed atomically to --out. Settings: the
    defaults < --config FILE < flags; the resolved ones are recorded in the checkpoint."""
    with user_errors():
        options = resolve_options(ctx, config)  # before torch is even imported
        from fusion.pipeline import train as run_train
        from fusion.training.callbacks import CSVLogger

        callbacks = [CSVLogger(metrics_csv)] if metrics_csv else []
        _, result, _ = run_train(store, options, out, callbacks)
    typer.echo(
        f"best {result.metric} {result.best:.4f} at epoch {result.best_epoch} of {result.epochs}"
        f" (ended by {result.stopped_by}) in {result.seconds:.0f} s"
        f" (peak memory {result.peak_memory_mb:.0f} MB); saved {out}"
    )


def resolve_options(ctx: typer.Context, config_file: Path | None) -> TrainOptions:
    """The run's options: the dataclass defaults < `config_file` < the flags given (a flag left
    at its default does not override the file)."""
    overrides: dict[str, Any] = {}
    for name, key in OPTION_KEYS.items():
        source = ctx.get_parameter_source(name)
        # By name: Typer vendors click, so its ParameterSource is not click's enum.
        if name not in ctx.params or source is None or source.name.startswith("DEFAULT"):
            continue
        value = ctx.params[name]
        if name == "text_fields":
            value = split_fields(value)
        section, _, leaf = key.rpartition(".")
        (overrides.setdefault(section, {}) if section else overrides)[leaf] = value
    return load_options(config_file, overrides)


def split_fields(text: str) -> tuple[str, ...]:
    return tuple(f.strip() for f in text.split(",") if f.strip())


def evaluate(
    checkpoint: Checkpoint = DEFAULT_CHECKPOINT,
    store: StoreUri = None,
    baselines: Annotated[bool, typer.Option(help="Also run popularity/text/LightGCN.")] = True,
    cold_start_epochs: Annotated[
        int, typer.Option(min=0, help="Related items: also train+evaluate on the cold-start split.")
    ] = 0,
    report: Annotated[Path, typer.Option(help="Where the JSON report is written.")] = (
        DEFAULT_REPORT
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
) -> None:
    """Full-ranking evaluation (Recall/HR/NDCG@10,20, MRR) of the checkpoint and the baselines
    on the split it was trained on."""
    from fusion.evaluation.harness import markdown, write_reports
    from fusion.pipeline import evaluate_checkpoint

    with user_errors():
        reports = evaluate_checkpoint(checkpoint, store, baselines, cold_start_epochs)
    write_reports(reports, report)
    typer.echo(json.dumps(reports, indent=2) if as_json else markdown(reports))
    err.print(f"report written to {report}")


def pipeline(
    ctx: typer.Context,
    catalogue: Annotated[Path, typer.Option(help="Catalogue file or directory.")],
    interactions: Annotated[Path | None, typer.Option(help="Interactions file.")] = None,
    format: Annotated[str, typer.Option("--format", help="Source layout, or auto.")] = "auto",
    config: ConfigFile = None,
    task: Task = DEFAULTS.task,
    relation: Relation = DEFAULTS.relation,
    epochs: Epochs = DEFAULTS.train.epochs,
    device: Device = DEFAULTS.device,
    max_minutes: MaxMinutes = DEFAULTS.train.max_minutes,
    store: StoreUri = None,
    out: Checkpoint = DEFAULT_CHECKPOINT,
) -> None:
    """Build the graph, train, evaluate against the baselines, and show the related items
    (with explanations) of one sample product: the whole job in one command."""
    console = Console()
    with user_errors():
        options = resolve_options(ctx, config)  # before torch is even imported
        from fusion.evaluation.harness import markdown, write_reports
        from fusion.pipeline import check_options, evaluate_checkpoint
        from fusion.pipeline import train as run_train
        from fusion.serving.recommender import Recommender
        from kg.build import build

        check_options(options)  # what else can be checked, before the build
        with progress_bars() as progress:
            summary = build(catalogue, interactions, format, store, progress=progress)
        console.print(summary_table(summary))
        model, result, split = run_train(store, options, out)
        console.print(f"trained: best {result.metric} {result.best:.4f} in {result.seconds:.0f} s")
        reports = evaluate_checkpoint(out, store, cold_start_epochs=0)
        write_reports(reports, DEFAULT_REPORT)
        console.print(markdown(reports))
        with Recommender.load(out, store) as rec:
            sample = rec.product_ids[int(split.queries("test")[0])]
            show(sample, rec.related(sample, k=5), as_json=False)
