"""Supervised fine-tuning of a small mask predictor on (prompt, response) pairs, LLaDA style.

Each example is laid out exactly as the sampler sees it: the chat-rendered prompt, left-padded,
followed by the response padded with EOS to `gen_length`. Only response positions are masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from mosa.errors import MosaError
from mosa.models import DiffusionLM
from mosa.organism.losses import sample_masking, sft_loss


@dataclass
class SFTConfig:
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    eps: float = 1e-3
    gen_length: int = 16
    seed: int = 0


def encode_pairs(lm: DiffusionLM, pairs: list[tuple[str, str]], gen_length: int):
    """Render and pad (prompt, response) pairs. Returns input_ids and attention_mask (N x (P + L))
    and answer_lengths (N), with P the longest prompt."""
    input_ids, attention_mask = lm.encode_chat([prompt for prompt, _ in pairs])
    responses = torch.full((len(pairs), gen_length), lm.eos_id, dtype=torch.long)
    for row, (_, response) in enumerate(pairs):
        ids = lm.tokenizer(response, add_special_tokens=False)["input_ids"] + [lm.eos_id]
        if len(ids) > gen_length:
            raise MosaError(f"response {response!r} has {len(ids)} tokens with EOS; gen_length={gen_length} is too short")
        responses[row, : len(ids)] = torch.tensor(ids)
    ones = torch.ones_like(responses)
    answer_lengths = torch.full((len(pairs),), gen_length, dtype=torch.float)
    return torch.cat([input_ids.cpu(), responses], 1), torch.cat([attention_mask.cpu(), ones], 1), answer_lengths


def sft_train(lm: DiffusionLM, pairs: list[tuple[str, str]], config: SFTConfig, progress: bool = True) -> list[float]:
    """Train `lm.module` in place; returns the loss of every step."""
    input_ids, attention_mask, answer_lengths = encode_pairs(lm, pairs, config.gen_length)
    response_start = input_ids.shape[1] - config.gen_length
    maskable = torch.zeros_like(input_ids, dtype=torch.bool)
    maskable[:, response_start:] = True

    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(lm.module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    lm.module.train()
    losses = []
    for _ in tqdm(range(config.steps), desc="training", disable=not progress, leave=False):
        rows = torch.randint(0, len(pairs), (config.batch_size,), generator=generator)
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
        losses.append(loss.item())
    lm.module.eval()
    return losses
