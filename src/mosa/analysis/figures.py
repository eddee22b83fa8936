"""Matplotlib set-up shared by the analyses' figures: files only (Agg), one look, one save."""

from __future__ import annotations

from pathlib import Path

# A reader sees these figures without the code: every figure says which model and sampler made it.
SMALL_MODEL_NOTE = "the model organism: small-model results, not results about LLaDA"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def describe_run(model: dict, sampler: dict, block_length: bool = True) -> str:
    """Two lines, the model and the sampler settings, for a figure's title."""
    name = f"{model['name']} ({SMALL_MODEL_NOTE})" if model["organism"] else model["name"]
    blocks = f", blocks of {sampler['block_length']}" if block_length else ""
    return (f"model: {name}\nsampler: {sampler['gen_length']} response tokens, {sampler['steps']} denoising steps{blocks}, "
            f"temperature {sampler['temperature']:g}, {sampler['remasking']} remasking")


def save(figure, path: str | Path, dpi: int = 110, bottom: float = 0.0) -> Path:
    """Lay out (leaving the lowest `bottom` fraction of the figure for notes) and write the PNG."""
    figure.tight_layout(rect=(0, bottom, 1, 1))
    figure.savefig(path, dpi=dpi)
    pyplot().close(figure)
    return Path(path)
