"""The progress bar of every phase that takes more than a few seconds: one place, one behaviour.

    for batch in progress_bar(batches, desc="judge", unit="batch", disable=not progress): ...

On a terminal (or in a notebook) it is tqdm's bar, redrawn in place. When the stream is a file
(`mosa demo > log 2>&1`, a CI log), a redrawn bar would leave hundreds of carriage-return
fragments in it, so the same text comes as plain lines instead: one once the phase has run for a
couple of seconds, one each time another tenth of it is done, and one when it ends. A phase over
sooner (loading a small model's weights) leaves no line at all.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm as interactive_tqdm
from tqdm.autonotebook import tqdm as notebook_or_std_tqdm  # after tqdm.auto, which silences its notebook warning
from tqdm.std import tqdm

LINES_PER_PHASE = 10  # a log gets a line at each tenth of a phase's work
QUIET_SECONDS = 2.0  # ... once the phase has lasted this long
IN_NOTEBOOK = notebook_or_std_tqdm is not tqdm  # tqdm found a notebook front end: its widget needs no tty


def progress_bar(iterable=None, **options) -> tqdm:
    """tqdm(iterable, **options) where a bar can be redrawn in place, `LogProgress` elsewhere."""
    stream = options.get("file") or sys.stderr
    redrawable = IN_NOTEBOOK or getattr(stream, "isatty", lambda: False)()
    return (interactive_tqdm if redrawable else LogProgress)(iterable, **options)


def note(message: str) -> None:
    """One line on stderr (a request sent again, say), written between the redraws of any bar on screen."""
    tqdm.write(message, file=sys.stderr)


def route_transformers_bars() -> None:
    """transformers' own bars (loading and writing weights: a minute each for LLaDA-8B) behave as
    mosa's: lines in a log. Called where mosa loads or saves a model (transformers is imported only
    there); where transformers' bars are switched off (`disable_progress_bar`), they stay off."""
    from transformers.utils import logging

    set_hook = getattr(logging, "set_tqdm_hook", None)  # not in every transformers mosa accepts
    if set_hook is not None:
        set_hook(
            lambda factory, args, kwargs: (
                progress_bar(*args, **kwargs) if logging.is_progress_bar_enabled() else factory(*args, **kwargs)
            )
        )


class LogProgress(tqdm):
    """tqdm's text as whole lines, for a stream that is not a terminal: once QUIET_SECONDS have
    passed, each time another tenth of `total` is done, and at the end; never a carriage return or
    a cursor move."""

    def __init__(self, *args, **options):
        self.printed_at = None  # the count when the last line was written
        # tqdm then shows every update, so that no tenth is skipped; a line is cheap next to a model
        # forward pass, and `due` keeps the file short.
        super().__init__(*args, **{**options, "mininterval": 0, "miniters": 1})

    def display(self, msg=None, pos=None) -> bool:
        if msg is None and self.due():
            self.write_line()
        return False  # nothing on screen to clear, so tqdm's close writes no '\r'

    def due(self) -> bool:
        if self.printed_at is None:
            return self.long()
        if not self.total:  # no total, no tenths: the first line and the last only
            return False
        tenth = lambda count: int(LINES_PER_PHASE * count / self.total)  # noqa: E731
        return tenth(self.n) > tenth(self.printed_at)

    def long(self) -> bool:
        return self.format_dict["elapsed"] >= QUIET_SECONDS

    def write_line(self) -> None:
        self.fp.write(f"{self}\n")
        getattr(self.fp, "flush", lambda: None)()
        self.printed_at = self.n

    def clear(self, nolock: bool = False) -> None:
        """A written line stays (tqdm.write clears bars before printing)."""

    def close(self) -> None:
        if not getattr(self, "disable", True) and self.printed_at != self.n and (self.printed_at is not None or self.long()):
            self.write_line()  # the final count, elapsed time and rate
        self.leave = False  # tqdm's own close then only "clears", through display(msg=""): nothing
        super().close()
