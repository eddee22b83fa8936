"""Progress in a redirected log (`mosa demo > log 2>&1`): whole lines at each tenth of a phase, never
carriage-return redraws, nothing for a phase over in a moment; on a terminal, tqdm's own bar."""

import io

import pytest

from mosa import progress
from mosa.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def slow(monkeypatch):
    """Every phase counts as long enough for a line from its start (these take milliseconds)."""
    monkeypatch.setattr(progress, "QUIET_SECONDS", 0.0)


def test_a_log_gets_a_line_at_the_start_and_at_each_tenth_and_no_carriage_return(slow):
    log = io.StringIO()
    for _ in progress_bar(range(1000), desc="behaviour card", unit="response", file=log, leave=False):
        pass
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text  # no redraw, no cursor movement
    lines = text.splitlines()
    assert len(lines) == 11 and lines[0].startswith("behaviour card:   0%") and lines[-1].startswith("behaviour card: 100%")
    assert "1000/1000" in lines[-1]


def test_a_bar_updated_by_hand_with_a_postfix_ends_with_its_final_count(slow):
    log = io.StringIO()
    with progress_bar(total=250, desc="mosa", file=log) as bar:
        for step in range(1, 251):  # as the trainer does
            bar.set_postfix(reward=f"{step / 10:.2f}", refresh=False)
            bar.update(1)
            bar.refresh()  # as a postfix set with refresh does (gcg-position): no extra line
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 11
    assert "250/250" in lines[-1] and "reward=25.00" in lines[-1]


def test_a_phase_cut_short_still_says_where_it_stopped(slow):
    log = io.StringIO()
    bar = progress_bar(total=100, desc="judge", file=log)
    bar.update(37)
    bar.close()
    assert log.getvalue().splitlines()[-1].startswith("judge:  37%")


def test_a_phase_over_in_a_moment_leaves_no_line_and_quiet_writes_nothing():
    log = io.StringIO()
    for _ in progress_bar(range(50), desc="Loading weights", file=log):
        pass
    for _ in progress_bar(range(5), file=log, disable=True):
        pass
    assert log.getvalue() == ""


def test_a_terminal_gets_tqdm_redrawing_its_bar():
    terminal = Terminal()
    for _ in progress_bar(range(5), file=terminal, mininterval=0):
        pass
    assert "\r" in terminal.getvalue()
