"""Sampling noise per prompt: a row's noise derives from the run seed and the row's prompt alone.

At temperature > 0 the sampler draws Gumbel noise to choose tokens, and `random` remasking draws
random confidences. One generator for the whole batch would hand each row whatever part of the
stream its place in the batch falls on, so a row's sample would change with its batch, its
neighbours and the batch size. Instead, at every denoising step, each row draws from a generator
of its own, seeded by (run seed, prompt key, step), over its own candidate positions only (from its
first mask to the end of the block), whose number depends on the row alone. Seeding per step, not
once per row, keeps a row's draws independent of the steps its batch happens to skip.

The prompt key is the prompt's token ids (padding left out), after the caller's prompt id when
there is one. Rows with equal keys get equal noise: give copies of one prompt ids of their own to
draw several samples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from mosa.errors import MosaError

# Noise at the positions a row does not draw for: never used (those positions are not committed),
# but it must be a valid uniform draw, since Gumbel noise takes its logarithm.
UNUSED = 0.5


def prompt_keys(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, prompt_ids: Sequence[str] | None) -> list[str]:
    """Each row's prompt key: its prompt's token ids (padding left out), after its prompt id when
    there is one. Both count: copies of one prompt under ids of their own draw apart, and the
    different prompts an attack sends under one behaviour's id do too."""
    if prompt_ids is not None and len(prompt_ids) != len(input_ids):
        raise MosaError(f"prompt_ids has {len(prompt_ids)} ids for a batch of {len(input_ids)}; give one per row")
    rows = (
        input_ids.tolist()
        if attention_mask is None
        else [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)]
    )
    ids = prompt_ids if prompt_ids is not None else [""] * len(rows)
    return [f"{prompt_id}\0" + " ".join(map(str, row)) for prompt_id, row in zip(ids, rows)]


class StepNoise:
    """Uniform noise for one denoising step, drawn row by row (see the module docstring).

    is_masked: B x K, the candidate window's masks; committing: B, the rows that commit a token at
    this step (the others draw nothing); step: the step, or one per row where rows step apart (the
    fast decodings, mosa.sampling.fast). Each call to `uniform` continues the rows' streams, so a
    step's draws come out in the order they are asked for."""

    def __init__(self, seed: int, keys: list[str], step: int | Sequence[int], is_masked: torch.Tensor, committing: torch.Tensor):
        self.seed, self.keys, self.step = seed, keys, step
        self.is_masked, self.committing = is_masked, committing
        # row -> (its first candidate column, its generator), for the rows that draw; made at the first draw
        self._generators: dict[int, tuple[int, torch.Generator]] | None = None

    def uniform(self, *trailing_shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """B x K x trailing_shape uniforms in [0, 1)."""
        batch, width = self.is_masked.shape
        device = self.is_masked.device
        noise = torch.full((batch, width, *trailing_shape), UNUSED, dtype=dtype, device=device)
        for row, (start, generator) in self._row_generators().items():
            noise[row, start:] = torch.rand((width - start, *trailing_shape), dtype=dtype, generator=generator, device=device)
        return noise

    def _row_generators(self) -> dict[int, tuple[int, torch.Generator]]:
        if self._generators is None:
            # The window's first columns may be candidates for other rows only: a row draws from its
            # own first mask, so the window's width does not reach its draws.
            first_masks = self.is_masked.int().argmax(dim=1).tolist()  # argmax returns the first maximum
            self._generators = {
                row: (
                    first_masks[row],
                    torch.Generator(device=self.is_masked.device).manual_seed(
                        row_seed(self.seed, self.keys[row], self.step if isinstance(self.step, int) else self.step[row])
                    ),
                )
                for row in self.committing.nonzero().flatten().tolist()
            }
        return self._generators


def row_seed(seed: int, key: str, step: int) -> int:
    """A 64-bit seed from (run seed, prompt key, step), the same in every process and Python run."""
    digest = hashlib.sha256(f"{seed}\0{key}\0{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little")
