import pytest

from text_encoder import (
    TextTemplate,
    UnreadableTextError,
    clean_text,
    has_descriptive_text,
    render_product_text,
)

FULL = {
    "title": "Xtreme <b>Brite</b> Gel &amp; Cream",
    "description": "Holds   all\tday.\x00",
    "brand": "Xtreme",
    "categories": [["Beauty", "Hair Care"], ["Beauty", "Hair Care"], "Styling"],
}


def test_full_product_renders_title_brand_categories_description_in_order():
    assert render_product_text(FULL) == (
        "Xtreme Brite Gel & Cream. Brand: Xtreme. Category: Beauty > Hair Care; Styling. "
        "Holds all day."
    )


def test_clean_text_strips_html_entities_controls_and_whitespace():
    assert clean_text("  <p>A&nbsp;b</p>\n\n<br/>c\x07 ") == "A b c"


@pytest.mark.parametrize("missing", [None, "", "   ", float("nan")])
def test_product_without_title_or_description_falls_back_to_brand_and_category(missing):
    fields = {"title": missing, "description": missing, "brand": "Acme", "categories": ["Beauty"]}
    assert render_product_text(fields) == "Brand: Acme. Category: Beauty"
    assert not has_descriptive_text(fields)
    assert has_descriptive_text(FULL)


def test_product_with_nothing_renders_empty_text():
    assert render_product_text({}) == ""


def test_template_is_configurable():
    template = TextTemplate(fields=("brand", "title"), labels={}, separator=" | ", max_chars=12)
    assert render_product_text(FULL, template) == "Xtreme | Xtr"


def test_bytes_are_decoded_as_utf8():
    assert render_product_text({"title": "Crème".encode()}) == "Crème"


@pytest.mark.parametrize("bad", [b"\xff\xfe", "bad \ud800 surrogate", 12.5, {"a": 1}])
def test_unreadable_field_raises_naming_the_field(bad):
    with pytest.raises(UnreadableTextError, match="title"):
        render_product_text({"title": bad})


def test_fields_must_be_a_mapping():
    with pytest.raises(UnreadableTextError, match="mapping"):
        render_product_text(["title"])
