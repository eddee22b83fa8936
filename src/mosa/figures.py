"""Matplotlib set-up shared by every figure mosa draws (the analyses, the reward curves): files only
(Agg), one legible look, one save.

Legibility: report.html shows a figure at most 1,100 px wide (its text column; a narrower window
shrinks it further). A figure of W inches is shrunk to that width, so a font of F points shows at
about F / 72 * 1100 / W px: with the sizes below (10-12 pt) and figures at most 12 inches wide,
the smallest text shows at 12 px or more. Drawn at 110 dpi, an 11-12 inch figure is about the size
it is shown at. `python benchmarks/report_screenshot.py report.html --output DIR` renders a report
as a 1,400 px browser window shows it, to look at.
"""

from __future__ import annotations

from pathlib import Path

# A reader sees these figures without the code: every figure says which model and sampler made it.
SMALL_MODEL_NOTE = "the model organism: small-model results, not results about LLaDA"
DPI = 110
MAX_WIDTH = 12  # inches: wider figures shrink their text below legibility in the report
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 12,
}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)  # process-wide, as the Agg backend above is: mosa draws files, not screens
    return plt


def legend_below(axis, **options) -> None:
    """The axis's legend under its x label, where long entries overlap neither the data nor the next panel."""
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), **options)


def describe_run(model: dict, sampler: dict, block_length: bool = True) -> str:
    """Two lines, the model and the sampler settings, for a figure's title."""
    name = f"{model['name']} ({SMALL_MODEL_NOTE})" if model["organism"] else model["name"]
    blocks = f", blocks of {sampler['block_length']}" if block_length else ""
    return (
        f"model: {name}\nsampler: {sampler['gen_length']} response tokens, {sampler['steps']} denoising steps{blocks}, "
        f"temperature {sampler['temperature']:g}, {sampler['remasking']} remasking"
    )


def save(figure, path: str | Path, dpi: int = DPI, bottom: float = 0.0) -> Path:
    """Lay out (leaving the lowest `bottom` fraction of the figure for notes) and write the PNG."""
    figure.tight_layout(rect=(0, bottom, 1, 1))
    figure.savefig(path, dpi=dpi)
    pyplot().close(figure)
    return Path(path)
