"""The training curve of an alignment run, as a PNG a person can read without the code."""

from __future__ import annotations

import json
from pathlib import Path

from mosa import figures
from mosa.align.objectives import MOSA_PANELS


def plot_metrics(metrics_path: str | Path, png_path: str | Path, title: str = "MOSA training", panels=None) -> Path:
    """One panel per entry of `panels` over optimiser steps: (title, y label, lines), each line a
    (metric, legend label or None, colour). The default is MOSA's: reward with its safe and harmful
    terms (nats), and the KL. Each objective gives its own (mosa.align.objectives); `title` names the
    run (trainer.curve_title: method, window, beta)."""
    plt = figures.pyplot()
    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records]
    panels = panels or MOSA_PANELS
    figure, axes = plt.subplots(1, len(panels), figsize=(11, 5.6))
    for axis, (panel_title, ylabel, lines) in zip(axes, panels):
        for metric, label, colour in lines:
            axis.plot(steps, [r[metric] for r in records], label=label, color=colour)
        axis.set(xlabel="optimiser step", ylabel=ylabel, title=panel_title)
        if any(label for _, label, _ in lines):
            figures.legend_below(axis)
    figure.suptitle(title)
    return figures.save(figure, png_path)
