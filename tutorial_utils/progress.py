"""A progress bar whose final state is what a saved notebook keeps.

tqdm's notebook widget is saved by a notebook executor (and so shown in the
published book) in its *first* state, "0% | 0/60", because the widget's later
states live only in the browser. This bar is a plain display output updated in
place with ``update_display_data``, which executors apply to the saved output:
the book shows the bar as it ended. Outside a Jupyter kernel it is tqdm's text
bar on stderr.

No TensorFlow here: the data layer's command line uses it too.
"""
from __future__ import annotations

import html
import time
from typing import Iterable, Iterator, Optional

__all__ = ["progress_bar", "ProgressBar"]


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class ProgressBar:
    """Iterate over ``iterable`` (or ``range(total)``) showing progress.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over; ``range(total)`` when omitted.
    total : int, optional
        Number of items (taken from ``len(iterable)`` when it has one).
    description : str
        Shown before the bar.
    initial : int
        Items already done (e.g. epochs restored from a checkpoint).
    disable : bool
        Show nothing.
    min_interval : float
        Seconds between two refreshes of the display (the last state is always shown).
    """

    def __init__(self, iterable: Optional[Iterable] = None, total: Optional[int] = None,
                 description: str = "", initial: int = 0, disable: bool = False,
                 min_interval: float = 0.5):
        if iterable is None:
            if total is None:
                raise ValueError("give `iterable` or `total` (the number of steps).")
            iterable = range(int(total))
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.description = iterable, total, description
        self.initial, self.count, self.postfix = int(initial), int(initial), ""
        self.disable, self.min_interval = disable, min_interval
        self._start = time.perf_counter()
        self._last = 0.0
        self._handle = self._tqdm = None
        if disable:
            return
        if _in_kernel():
            from IPython.display import display

            self._handle = display(self._bundle(), raw=True, display_id=True)
        else:
            from tqdm.std import tqdm

            self._tqdm = tqdm(total=total, desc=description, initial=self.initial, mininterval=min_interval)

    # -- the display ------------------------------------------------------
    def _text(self) -> str:
        elapsed = time.perf_counter() - self._start
        total = "?" if self.total is None else self.total
        percent = "" if not self.total else f" ({100 * self.count / self.total:.0f} %)"
        postfix = f", {self.postfix}" if self.postfix else ""
        return f"{self.description}: {self.count}/{total}{percent} in {elapsed:.1f} s{postfix}"

    def _bundle(self) -> dict:
        value = f' value="{self.count}" max="{self.total}"' if self.total else ""
        page = (f'<div class="tutorial-progress"><progress{value} style="width: 12em"></progress> '
                f"<code>{html.escape(self._text())}</code></div>")
        return {"text/plain": self._text(), "text/html": page}

    def refresh(self, force: bool = False) -> None:
        """Redraw now if ``min_interval`` has passed (always with ``force``)."""
        now = time.perf_counter()
        if self._handle is not None and (force or now - self._last >= self.min_interval):
            self._handle.update(self._bundle(), raw=True)
            self._last = now

    # -- the loop -----------------------------------------------------------
    def set_postfix(self, **values) -> None:
        """Show ``name=value`` pairs after the count (floats with 4 significant digits)."""
        self.postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in values.items())
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(self.postfix, refresh=False)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done."""
        self.count += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        self.refresh()

    def close(self) -> None:
        """Show the final state."""
        self.refresh(force=True)
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()


def progress_bar(iterable: Optional[Iterable] = None, total: Optional[int] = None,
                 description: str = "", **options) -> ProgressBar:
    """A :class:`ProgressBar`; ``for step in progress_bar(range(100), description="fit"): ...``.

    Examples
    --------
    >>> bar = progress_bar(total=3, description="demo", disable=True)
    >>> for _ in bar:
    ...     bar.set_postfix(loss=0.5)
    >>> bar.count
    3
    """
    return ProgressBar(iterable, total=total, description=description, **options)
