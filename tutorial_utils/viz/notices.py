"""A notice box for a notebook: a warning or a note that stands out from the text.

A chapter shows one where the reader must not miss something (e.g. that it runs
on stand-in data). The box's colours are from the Okabe-Ito palette, which stays
distinct for the common forms of colour blindness, and the kind is also written
out ("Warning: ..."), so colour is never the only cue. Outside a browser (a
terminal, a text export) it shows as plain text.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

from ._common import _template

__all__ = ["NOTICE_KINDS", "Notice", "notice"]

#: Each kind's word, border colour and background (Okabe-Ito hues; backgrounds are 90 % white tints).
NOTICE_KINDS = {
    "warning": ("Warning", "#D55E00", "#FBEFE6"),  # vermillion
    "note": ("Note", "#0072B2", "#E6F1F7"),  # blue
    "success": ("Done", "#009E73", "#E6F5F1"),  # bluish green
}


def notice(title: str, text: str = "", kind: str = "warning") -> "Notice":
    """A notice box to show in a notebook (the cell's last value, or ``display(...)`` it).

    Parameters
    ----------
    title : str
        Shown first, in bold, after the kind's word (e.g. "Warning: ...").
    text : str
        Plain text (not HTML: ``<``, ``&`` are shown as typed).
    kind : {"warning", "note", "success"}
        Sets the word and the colour (see :data:`NOTICE_KINDS`).

    Returns
    -------
    Notice
        Jupyter shows its HTML (``_repr_html_``); ``str()``/``repr()`` give the plain text.

    Raises
    ------
    ValueError
        For an unknown ``kind`` or an empty ``title``.
    TypeError
        When ``title`` or ``text`` is not a string.

    Examples
    --------
    >>> box = notice("STAND-IN DATA, not lung CT.", "Synthesised from the masks.")
    >>> print(box)
    WARNING: STAND-IN DATA, not lung CT.
    Synthesised from the masks.
    >>> "#D55E00" in box._repr_html_()
    True
    """
    if kind not in NOTICE_KINDS:
        raise ValueError(f"`kind` is {kind!r}; it needs to be one of {list(NOTICE_KINDS)}.")
    for name, value in (("title", title), ("text", text)):
        if not isinstance(value, str):
            raise TypeError(f"`{name}` is {value!r} of type {type(value).__name__}; it needs to be a str.")
    if not title.strip():
        raise ValueError("`title` is empty; a notice needs a title saying what it is about.")
    return Notice(title=title, text=text, kind=kind)


@dataclass(frozen=True, repr=False)
class Notice:
    """A notice box made by :func:`notice`: HTML for Jupyter, plain text elsewhere."""

    title: str
    text: str = ""
    kind: str = "warning"

    def _repr_html_(self) -> str:
        label, colour, background = NOTICE_KINDS[self.kind]
        return _template("notice.html").substitute(
            kind=self.kind, label=label, colour=colour, background=background,
            title=html.escape(self.title), text=html.escape(self.text)).strip()

    def __str__(self) -> str:
        head = f"{NOTICE_KINDS[self.kind][0].upper()}: {self.title}"
        return f"{head}\n{self.text}" if self.text else head

    __repr__ = __str__  # Jupyter's text/plain fallback is the repr
