"""Store URIs: passwords are split off for the driver and masked wherever a URI is shown."""

from __future__ import annotations

import pytest

from kg.stores import StoreError, open_store
from kg.stores.uri import redact, split_credentials


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("bolt://neo4j:pw@127.0.0.1:7687", "bolt://neo4j:***@127.0.0.1:7687"),
        ("neo4j+s://u:p@ss@db.example:7687/x", "neo4j+s://u:***@db.example:7687/x"),  # `@` in it
        ("at bolt://a:1@h:1 and neo4j://b:2@h:2.", "at bolt://a:***@h:1 and neo4j://b:***@h:2."),
        ("bolt://user@host:1", "bolt://user@host:1"),  # no password, nothing to hide
        ("bolt://host:1 embedded:/tmp/g", "bolt://host:1 embedded:/tmp/g"),
    ],
)
def test_redact(text, shown):
    assert redact(text) == shown


def test_split_credentials():
    assert split_credentials("bolt://neo4j:p%40ss@h:1") == ("bolt://h:1", "neo4j", "p@ss")
    assert split_credentials("bolt://h:1") == ("bolt://h:1", None, None)


def test_an_unknown_scheme_error_masks_the_password():
    with pytest.raises(StoreError) as error:
        open_store("http://neo4j:hunter2@h:1")
    assert "hunter2" not in str(error.value) and "neo4j:***@h:1" in str(error.value)
