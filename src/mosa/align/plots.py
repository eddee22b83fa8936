"""The reward curve of a MOSA run, as a PNG a person can read without the code."""

from __future__ import annotations

import json
from pathlib import Path

from mosa import figures


def plot_metrics(metrics_path: str | Path, png_path: str | Path, title: str = "MOSA training") -> Path:
    """Two panels over optimiser steps: reward with its safe and harmful terms (nats), and the KL.
    `title` names the run (trainer.curve_title: method, window, beta)."""
    plt = figures.pyplot()
    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    steps = [r["step"] for r in records]
    figure, (rewards, kl) = plt.subplots(1, 2, figsize=(11, 5.6))
    rewards.plot(steps, [r["reward"] for r in records], label="reward = R_pos - R_neg", color="black")
    rewards.plot(steps, [r["R_pos"] for r in records], label="R_pos: safe sentence score", color="tab:green")
    rewards.plot(steps, [r["R_neg"] for r in records], label="R_neg: harmful sentence score", color="tab:red")
    rewards.set(xlabel="optimiser step", ylabel="log-probability (nats)", title="reward and its terms")
    figures.legend_below(rewards)
    kl.plot(steps, [r["kl"] for r in records], color="tab:blue")
    kl.set(xlabel="optimiser step", ylabel="KL to the reference (nats)", title="KL(policy || reference)")
    figure.suptitle(title)
    return figures.save(figure, png_path)
