"""`kgrec train | evaluate | pipeline`: fit the fused model on the store's graph, measure it
against the baselines on the same split, or run build → train → evaluate → query in one go."""

from __future__ import annotations

import signal
from contextlib import nullcontext
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
from fusion.config import (
    AUTO_NEGATIVES,
    DEFAULT_OBJECTIVES,
    DERIVABLE,
    FULL_SOFTMAX_MAX_PRODUCTS,
    OBJECTIVES,
    RELATIONS,
    SPLITS,
    TASKS,
    WARM_EPOCHS,
    TrainOptions,
    load_options,
    parse_weights,
)

TASK_HELP = (
    "related: Product→Product links; recommend: User→Product; rank: User→Product per objective "
    "(--objectives)."
)
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
    "batch_size": "train.batch_size",
    "negatives": "model.num_negatives",
    "memory_budget": "model.memory_budget",
    "objectives": "model.objectives",
    "split": "split",
    "cut": "cut",
    "relations": "relations",
    "derive": "derive",
}
SplitProtocol = Annotated[
    Literal[SPLITS],
    typer.Option(
        "--split",
        help="Recommendations: leave-last-out per user, or time (a global cut, --cut); "
        "users and products first seen after the cut are cold.",
    ),
]
Cut = Annotated[
    float | None,
    typer.Option(
        help="--split time: the test window starts at this timestamp, or at this quantile of "
        "the interaction times when within (0, 1) [default: the last 10%].",
    ),
]
Relations = Annotated[
    str,
    typer.Option(
        help=f"Crawled Product→Product relations the model sees: all, none, or some of "
        f"{','.join(RELATIONS)} (comma-separated; --task related always keeps its own).",
    ),
]
Derive = Annotated[
    str,
    typer.Option(
        help=f"Relations derived from the training interactions only: {','.join(DERIVABLE)} "
        "(comma-separated; co_view needs view events).",
    ),
]


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
    batch_size: Annotated[
        int, typer.Option(min=1, help="Training targets per step (across all processes).")
    ] = DEFAULTS.train.batch_size,
    negatives: Annotated[
        int,
        typer.Option(
            min=-1,
            help="Random negatives per step: 0 = full softmax, -1 = auto (full up to "
            f"{FULL_SOFTMAX_MAX_PRODUCTS:,} products, else {AUTO_NEGATIVES} sampled).",
        ),
    ] = DEFAULTS.model.num_negatives,
    memory_budget: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="GiB for the propagated feature matrix: float32 if it fits, else float16, "
            "else float16 memory-mapped in $TMPDIR.",
        ),
    ] = DEFAULTS.model.memory_budget,
    objectives: Annotated[
        str | None,
        typer.Option(
            help="--task rank: loss weight per objective, e.g. click=1,cart=2,purchase=4"
            f"[,revenue=1,rating=1] (objectives: {', '.join(OBJECTIVES)}; default "
            f"{','.join(f'{k}={v:g}' for k, v in DEFAULT_OBJECTIVES.items())}); also the "
            "default query-time weights.",
        ),
    ] = None,
    split: SplitProtocol = DEFAULTS.split,
    cut: Cut = DEFAULTS.cut,
    relations: Relations = "all",
    derive: Derive = "",
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Processes for data-parallel training on this machine (torchrun; one GPU "
            "each when there are GPUs). Several machines: see README.",
        ),
    ] = 1,
    store: StoreUri = None,
    out: Checkpoint = DEFAULT_CHECKPOINT,
) -> None:
    """Train the GNN and the text/graph fusion layer jointly; held-out edges never reach
    training; the best validation epoch is checkpointed atomically to --out. Settings: the
    defaults < --config FILE < flags; the resolved ones are recorded in the checkpoint.
    Ctrl-C/SIGTERM (or --max-minutes) end it gracefully: the epoch in progress is validated and
    the best checkpoint saved (exit status 130/143 after a signal)."""
    with user_errors():
        options = resolve_options(ctx, config)  # before torch is even imported
        if nproc > 1:
            launch(ctx, nproc)
            return
        from fusion.pipeline import train as run_train
        from fusion.training import distributed
        from fusion.training.callbacks import CSVLogger

        main = distributed.is_main()
        callbacks = [CSVLogger(metrics_csv)] if metrics_csv else []
        with progress_bars() if main else nullcontext() as progress:
            _, result, _ = run_train(store, options, out, callbacks, progress)
    if not main:
        return
    typer.echo(
        f"best {result.metric} {result.best:.4f} at epoch {result.best_epoch} of {result.epochs}"
        f" (ended by {result.stopped_by}) in {result.seconds:.0f} s"
        f" (peak memory {result.peak_memory_mb:.0f} MB); saved {out}"
    )
    if result.stopped_by.startswith("interrupted by "):
        signum = signal.Signals[result.stopped_by.removeprefix("interrupted by ")]
        err.print(f"training was interrupted ({signum.name}); the best checkpoint is saved")
        raise typer.Exit(128 + signum)


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
        if name in ("text_fields", "derive"):
            value = split_fields(value)
        elif name == "objectives":
            value = parse_weights(value, "--objectives")
        elif name == "relations":
            value = relation_names(value)
        section, _, leaf = key.rpartition(".")
        (overrides.setdefault(section, {}) if section else overrides)[leaf] = value
    return load_options(config_file, overrides)


def launch(ctx: typer.Context, nproc: int) -> None:
    """Run this `kgrec train` command as `torchrun --standalone --nproc-per-node N -m
    fusion.cli train …` (the same options but --nproc): N processes on this machine."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from fusion.training import distributed

    if distributed.launched():
        raise typer.BadParameter("--nproc cannot be used inside torchrun", param_hint="--nproc")
    argv = []
    for param in ctx.command.params:
        value, source = ctx.params[param.name], ctx.get_parameter_source(param.name)
        # Only what the user gave: a default passed on would override --config's value.
        if param.name == "nproc" or value is None or source is None or source.name != "COMMANDLINE":
            continue
        if getattr(param, "is_flag", False):
            argv.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            argv += [param.opts[0], str(value)]
    launcher = ["--standalone", f"--nproc-per-node={nproc}", "-m", "fusion.cli", "train"]
    try:
        run(get_args_parser().parse_args(launcher + argv))
    except SignalException as exc:  # torchrun passed it on and gave the processes 30 s
        err.print(f"training was interrupted ({exc.sigval.name})")
        raise typer.Exit(128 + exc.sigval) from None
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        err.print(f"[red]error:[/red] training process {rank} exited with {failure.exitcode}")
        raise typer.Exit(1) from None


def split_fields(text: str) -> tuple[str, ...]:
    return tuple(f.strip() for f in text.split(",") if f.strip())


def relation_names(text: str) -> tuple[str, ...] | None:
    """`--relations`: None for all, () for none, else the names given."""
    names = tuple(name.lower() for name in split_fields(text))
    if names in ((), ("all",)):
        return None
    return () if names == ("none",) else names


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
    mask_history: Annotated[
        bool,
        typer.Option(help="Leave each query's own history (training items) out of the ranking."),
    ] = True,
) -> None:
    """Full-ranking evaluation (Recall/HR/NDCG@10,20, MRR; coverage, Gini, popularity, long
    tail, diversity, novelty of the top 10; bootstrap 95% intervals) of the checkpoint and the
    baselines on the split it was trained on."""
    from fusion.evaluation.harness import markdown, to_json, write_reports
    from fusion.pipeline import evaluate_checkpoint

    with user_errors():
        reports = evaluate_checkpoint(checkpoint, store, baselines, cold_start_epochs, mask_history)
    write_reports(reports, report)
    typer.echo(to_json(reports) if as_json else markdown(reports))
    err.print(f"report written to {report}")


def pipeline(
    ctx: typer.Context,
    catalogue: Annotated[
        Path | None,
        typer.Option(
            help="Catalogue file or directory [default: $KGREC_DATA/amazon-magazine-2018 "
            "(../shared/data) when present, else the Magazine sample inside kgrec]."
        ),
    ] = None,
    interactions: Annotated[Path | None, typer.Option(help="Interactions file.")] = None,
    format: Annotated[str, typer.Option("--format", help="Source layout, or auto.")] = "auto",
    config: ConfigFile = None,
    task: Task = DEFAULTS.task,
    relation: Relation = DEFAULTS.relation,
    epochs: Epochs = DEFAULTS.train.epochs,
    device: Device = DEFAULTS.device,
    max_minutes: MaxMinutes = DEFAULTS.train.max_minutes,
    split: SplitProtocol = DEFAULTS.split,
    cut: Cut = DEFAULTS.cut,
    relations: Relations = "all",
    derive: Derive = "",
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
        from kg.samples import default_input

        check_options(options)  # what else can be checked, before the build
        if catalogue is None:
            default = default_input()
            catalogue, interactions = default.catalogue, interactions or default.interactions
            console.print(f"no --catalogue given: using {default.source}", highlight=False)
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
