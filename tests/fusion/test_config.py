"""The run configuration: dataclass defaults < a YAML run file < overrides (the flags), frozen
options, and errors that name the key and the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fusion.config import (
    WARM_EPOCHS,
    FusedConfig,
    TrainConfig,
    TrainOptions,
    load_options,
    option_names,
    parse_weights,
)
from kg.errors import ConfigError, InvalidArgumentError, KgrecError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_dataclasses():
    assert load_options() == TrainOptions()
    assert TrainOptions().train == TrainConfig() and TrainOptions().model == FusedConfig()


def test_a_file_overrides_the_defaults_and_overrides_override_the_file(tmp_path):
    path = write(
        tmp_path,
        "relation: also_viewed\ntext_fields: [title, brand]\n"
        "model:\n  dim: 32\ntrain:\n  epochs: 5\n  lr: 0.01\n",
    )
    from_file = load_options(path)
    assert (from_file.relation, from_file.text_fields) == ("also_viewed", ("title", "brand"))
    assert (from_file.model.dim, from_file.train.epochs, from_file.train.lr) == (32, 5, 0.01)
    assert from_file.train.batch_size == TrainConfig.batch_size  # untouched keys keep defaults

    both = load_options(path, {"train": {"epochs": 2}, "relation": "bought_together"})
    assert (both.train.epochs, both.relation) == (2, "bought_together")
    assert (both.train.lr, both.model.dim) == (0.01, 32)  # the file's other keys still hold


def test_a_warm_start_trains_warm_epochs_unless_a_layer_sets_them(tmp_path):
    assert load_options(None, {"warm_start": tmp_path}).train.epochs == WARM_EPOCHS
    path = write(tmp_path, "train:\n  epochs: 7\n")
    assert load_options(path, {"warm_start": tmp_path}).train.epochs == 7
    assert load_options(None, {"warm_start": tmp_path, "train": {"epochs": 9}}).train.epochs == 9


def test_options_are_frozen():
    options = TrainOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.task = "recommend"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.train.device = "cpu"  # type: ignore[misc]


def test_an_unknown_key_names_the_key_and_the_file(tmp_path):
    path = write(tmp_path, "model:\n  dimm: 32\n")
    with pytest.raises(ConfigError, match=rf"{path}: unknown key 'model\.dimm'"):
        load_options(path)


def test_a_wrongly_typed_value_names_the_key_and_the_file(tmp_path):
    path = write(tmp_path, "train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=rf"{path}: train\.epochs: .*integer.*'many'"):
        load_options(path)
    with pytest.raises(ConfigError, match=r"command line: train\.lr: .*'fast'"):
        load_options(path, {"train": {"epochs": 1, "lr": "fast"}})


def test_a_bad_value_is_blamed_on_the_layer_that_set_it(tmp_path):
    path = write(tmp_path, "relation: also_bougt\n")
    with pytest.raises(ConfigError, match=rf"{path}: relation: unknown relation 'also_bougt'"):
        load_options(path)
    with pytest.raises(ConfigError, match=r"command line: relation: unknown relation 'x'"):
        load_options(path, {"relation": "x"})
    load_options(path, {"relation": "also_viewed"})  # the flag fixes the file's typo


def test_derived_keys_and_malformed_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.task follows 'task'"):
        load_options(write(tmp_path, "model:\n  task: recommend\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_options(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_options(write(tmp_path, "model: [\n"))
    assert load_options(write(tmp_path, "")) == TrainOptions()
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_options(tmp_path / "nope.yaml")
    assert "model.dim" in option_names() and "model.task" not in option_names()


def test_direct_construction_checks_task_and_relation():
    with pytest.raises(InvalidArgumentError, match="unknown relation 'also_bougt'"):
        TrainOptions(relation="also_bougt")
    with pytest.raises(KgrecError, match="task must be one of"):
        TrainOptions(task="ranking")
    TrainOptions(task="recommend", relation="anything")  # the relation is for task=related only


def test_the_record_is_json_ready(tmp_path):
    record = TrainOptions(warm_start=tmp_path, text_fields=("title",)).to_dict()
    assert record["warm_start"] == str(tmp_path) and record["text_fields"] == ["title"]
    assert record["train"]["epochs"] == TrainConfig.epochs


def test_weights_parse_into_objectives():
    assert parse_weights("click=1, cart=2,purchase=4.5") == {
        "click": 1.0,
        "cart": 2.0,
        "purchase": 4.5,
    }
    assert parse_weights("purchase=1,revenue=0") == {"purchase": 1.0, "revenue": 0.0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("purchase=1,clicks=2", r"unknown objective 'clicks'; known: click, cart"),
        ("purchase=lots", r"purchase='lots' is not a number"),
        ("purchase=-1", r"purchase=-1.0 must be a finite number >= 0"),
        ("purchase=nan", r"must be a finite number"),
        ("purchase", r"expected objective=number, got 'purchase'"),
        ("purchase=1,purchase=2", r"'purchase' given twice"),
        ("purchase=0", r"at least one objective a positive weight"),
        ("", r"at least one objective a positive weight"),
    ],
)
def test_bad_weights_are_refused_with_what_is_wrong(text, message):
    with pytest.raises(InvalidArgumentError, match=message):
        parse_weights(text)


def test_objectives_belong_to_the_rank_task():
    options = load_options(overrides={"task": "rank", "model": {"objectives": {"purchase": 2}}})
    assert options.model.objectives == {"purchase": 2.0}
    with pytest.raises(ConfigError, match="objectives need task 'rank'"):
        load_options(overrides={"task": "recommend", "model": {"objectives": {"purchase": 2}}})
    with pytest.raises(ConfigError, match="unknown objective 'profit'"):
        load_options(overrides={"task": "rank", "model": {"objectives": {"profit": 1}}})
