"""viz.notices: the notice box a chapter shows (e.g. chapter 5's stand-in data warning)."""
from html.parser import HTMLParser

import pytest

from tutorial_utils import viz

#: Okabe & Ito (2008), "Color Universal Design": the colour-blind-safe hues, written out independently.
OKABE_ITO = {"orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7", "black": "#000000"}


class _Page(HTMLParser):
    """Text, tags and inline styles of an HTML fragment, as a browser's parser reads them."""

    def __init__(self, markup):
        super().__init__(convert_charrefs=True)
        self.text, self.tags, self.styles, self.open = "", [], [], 0
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.styles += [value for name, value in attrs if name == "style"]
        self.open += 1

    def handle_endtag(self, tag):
        self.open -= 1

    def handle_data(self, data):
        self.text += data


def test_notice_shows_title_and_text_as_typed_in_a_warning_box():
    box = viz.notice("STAND-IN DATA, not lung CT.", "Masks <b>only</b> & synthetic intensities.")
    page = _Page(box._repr_html_())
    assert page.open == 0, "every tag is closed"
    assert page.tags.count("b") == 1, "the text's '<b>' is shown, not parsed"
    assert page.text.split() == "Warning: STAND-IN DATA, not lung CT. Masks <b>only</b> & synthetic intensities.".split()
    assert str(box) == repr(box) == "WARNING: STAND-IN DATA, not lung CT.\nMasks <b>only</b> & synthetic intensities."
    assert "<" not in str(viz.notice("Note this", kind="note")) and str(viz.notice("Note this", kind="note")) == \
        "NOTE: Note this"


@pytest.mark.parametrize("kind", ["warning", "note", "success"])
def test_every_kind_is_written_out_and_bordered_in_an_okabe_ito_hue(kind):
    box = viz.notice("Title", "text", kind=kind)
    page = _Page(box._repr_html_())
    border = next(s for s in page.styles if "border:" in s)
    colour = border.split("border:")[1].split(";")[0].split()[-1]
    assert colour.upper() in OKABE_ITO.values()
    assert page.text.split(":")[0] in ("Warning", "Note", "Done"), "the kind is in words, not only in colour"
    assert "color:#000000" in border.replace(" ", ""), "dark text whatever the notebook theme"
    assert "<script" not in box._repr_html_() and "http" not in box._repr_html_()


def test_notice_refuses_bad_input():
    with pytest.raises(ValueError, match=r"`kind` is 'danger'; it needs to be one of \['warning'"):
        viz.notice("Title", kind="danger")
    with pytest.raises(ValueError, match="`title` is empty"):
        viz.notice("  ")
    with pytest.raises(TypeError, match="`text` is 3 of type int; it needs to be a str"):
        viz.notice("Title", 3)


def test_jupyter_shows_html_with_a_plain_text_fallback():
    formatters = pytest.importorskip("IPython.core.formatters")

    data, _ = formatters.DisplayFormatter().format(viz.notice("Stand-in", "Not CT."))
    assert "tu-notice" in data["text/html"]
    assert data["text/plain"] == "WARNING: Stand-in\nNot CT."
