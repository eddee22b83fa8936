"""Supervised fine-tuning of a small mask predictor on (prompt, response) examples, LLaDA style.

Each example is laid out exactly as the sampler sees it: the chat-rendered prompt, left-padded,
followed by the response padded with EOS to `gen_length`. Only response positions are masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mosa.errors import MosaError
from mosa.models import DiffusionLM
from mosa.organism.losses import sample_masking, sft_loss
from mosa.progress import progress_bar


@dataclass
class SFTConfig:
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1  # cosine decay from lr to lr * min_lr_ratio
    weight_decay: float = 0.0
    eps: float = 1e-3
    gen_length: int = 16
    seed: int = 0

    def validate(self, stage: str) -> None:
        """Refuse a setting training would trip over, or train nonsense with, before a build starts."""
        for name, low in (("steps", 1), ("batch_size", 1), ("gen_length", 1), ("warmup_steps", 0), ("seed", 0)):
            require_range(f"{stage}.{name}", getattr(self, name), low, integer=True)
        require_range(f"{stage}.lr", self.lr, 0, low_open=True)
        require_range(f"{stage}.min_lr_ratio", self.min_lr_ratio, 0, 1)
        require_range(f"{stage}.weight_decay", self.weight_decay, 0)
        require_range(f"{stage}.eps", self.eps, 0, 1)


def require_range(name: str, value, low: float, high: float = math.inf, *, integer: bool = False, low_open: bool = False) -> None:
    """Refuse, in one line, a setting that is not a number (an integer, if `integer`) from `low` (or
    above it, if `low_open`) up to `high`."""
    kinds = int if integer else (int, float)
    fits = (
        isinstance(value, kinds) and not isinstance(value, bool) and (value > low if low_open else value >= low) and value <= high
    )
    if not fits:
        kind = "an integer" if integer else "a number"
        above = f"> {low:g}" if low_open else f">= {low:g}"
        raise MosaError(f"{name}={value!r} must be {kind} {above}" + ("" if high == math.inf else f" and <= {high:g}"))


@dataclass(frozen=True)
class SFTExample:
    prompt: str
    response: str
    # Response token positions [start, end) given to the model (never masked) and left out of the
    # loss: the rest is learned conditioned on them. Used for shallow alignment ("with this opener,
    # or this step, already written, comply").
    given: tuple[int, int] = (0, 0)


def encode_examples(lm: DiffusionLM, examples: list[SFTExample], gen_length: int):
    """Render and pad examples. Returns input_ids and attention_mask (N x (P + L)), with P the
    longest prompt, and `maskable` (N x (P + L) bool: response positions outside the given span)."""
    input_ids, attention_mask = lm.encode_chat([example.prompt for example in examples])
    prompt_width = input_ids.shape[1]
    responses = torch.full((len(examples), gen_length), lm.eos_id, dtype=torch.long)
    maskable = torch.zeros((len(examples), prompt_width + gen_length), dtype=torch.bool)
    for row, example in enumerate(examples):
        ids = lm.tokenizer(example.response, add_special_tokens=False)["input_ids"] + [lm.eos_id]
        if len(ids) > gen_length:
            raise MosaError(f"response {example.response!r} has {len(ids)} tokens with EOS; gen_length={gen_length} is too short")
        responses[row, : len(ids)] = torch.tensor(ids)
        maskable[row, prompt_width:] = True
        start, end = example.given
        maskable[row, prompt_width + start : prompt_width + end] = False
    ones = torch.ones_like(responses)
    return torch.cat([input_ids.cpu(), responses], 1), torch.cat([attention_mask.cpu(), ones], 1), maskable


def sft_train(lm: DiffusionLM, examples: list[SFTExample], config: SFTConfig, progress: bool = True) -> list[float]:
    """Train `lm.module` in place on examples drawn uniformly with replacement; returns the loss of
    every step. Answer length (the SFT normaliser) is gen_length: responses are padded with EOS."""
    input_ids, attention_mask, maskable = encode_examples(lm, examples, config.gen_length)
    answer_lengths = torch.full((len(examples),), float(config.gen_length))

    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(lm.module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    lm.module.train()
    losses = []
    for _ in progress_bar(range(config.steps), desc="training", disable=not progress, leave=False):
        rows = torch.randint(0, len(examples), (config.batch_size,), generator=generator)
        targets, visible = input_ids[rows], attention_mask[rows]
        masked, p_mask = sample_masking(maskable[rows], config.eps, generator)
        noisy = targets.masked_fill(masked, lm.mask_id)
        logits = lm.logits(noisy, visible)
        loss = sft_loss(logits, targets, masked, p_mask, answer_lengths[rows])
        if not torch.isfinite(loss):
            raise MosaError(f"training loss became {loss.item()} at step {len(losses)}; lower the learning rate")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    lm.module.eval()
    return losses


def lr_factor(step: int, config: SFTConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
