"""Fast approximate decoding, opt-in: confidence-threshold parallel decoding and block-wise KV caches.

Fast-dLLM (Wu et al., "Fast-dLLM: Training-free Acceleration of Diffusion LLM by Enabling KV Cache
and Parallel Decoding", arXiv 2505.22618) speeds up LLaDA-style sampling in two ways; mosa offers
both as sampler settings (`SamplerConfig.decoding`, `threshold`), written for mosa's sampler: prefill,
interventions, bans, remasking rules, temperature and the EOS options work as in the exact loop.
Both change tokens, so the exact loop (mosa.sampling.sampler) stays the default, and
benchmarks/bench_decoding.py measures what they change.

  threshold     Within the current block, a step commits every masked position whose confidence
                reaches `threshold`, and at least one: the most confident (ranked as the exact loop
                ranks, ties included). The block ends when it is full, so `steps` no longer applies;
                a block also ends after block_length steps, which only a model that predicts the mask
                token itself reaches (the position stays masked, as in the exact loop).
  prefix-cache  At a block's first step the whole canvas runs, and the keys and values of every
                position before the block (prompt and finished blocks) are kept; the block's later
                steps run only the block and what follows it, attending to the kept ones. Exact at
                each block's first step (the same forward pass); approximate after it, because in a
                bidirectional model the prefix's keys and values depend on the block's tokens, which
                change within the block while the kept ones do not.
  dual-cache    The same, with the masked suffix after the block kept too: later steps run the block
                alone. The suffix's kept keys and values miss the block's progress as well.
The caches commit with the threshold rule when `threshold` is set, else with the exact loop's
schedule (steps per block, the most confident k per step). Under a cache only the block's positions
are candidates: masks left in the prompt (DIJA-style templates) or in finished blocks lie in the kept
part and stay masked, where the exact loop lets them compete again.

Caches need a module that takes a transformers cache: mosa's native LLaDA / MMaDA / Dream and the
bidirectional Llama (mosa.models.wrappers.BidirectionalLM). The cache holds the kept positions, and
the positions that run are fed after them, in the cache's order, with their own position ids: a
bidirectional model's attention does not care in what order its keys come, so one DynamicCache
serves both caches, cut back to the kept positions after every pass.

Rows step apart: under the threshold rule one row may fill its block in 2 steps, another in 9, and
the batch moves on to the next block only when every row has. So each row counts its own steps (the
steps at which it had masks left in the block): its noise, its interventions and its commit steps
follow its own count, and a row's output does not depend on its batch, as in the exact loop. An
intervention at a step a row never reaches (it finished in fewer steps) is written over its final
canvas. A step that writes an intervention refreshes the cache of the rows written to, as a block's
first step does (a full pass, and for the other rows of the batch a pass from their cache as usual).
"""

from __future__ import annotations

import torch

from mosa.errors import MosaError
from mosa.sampling.defences import terminate_rows
from mosa.sampling.noise import StepNoise
from mosa.sampling.remasking import get_remasking_rule
from mosa.sampling.sampler import (
    _choose_tokens,
    _decode_ban_regions,
    _intervene,
    commit_schedule,
    top_k_commits,
    window_logits,
)


def decoding_label(decoding: str = "exact", threshold: float | None = None) -> str:
    """How tables name a decoding: "exact", "threshold 0.9", "dual-cache", "dual-cache, threshold 0.9"."""
    if threshold is None:
        return decoding
    return f"threshold {threshold:g}" if decoding == "threshold" else f"{decoding}, threshold {threshold:g}"


def decode_fast(
    model,
    x,
    attention_mask,
    prompt_index,
    cfg,
    keys,
    planned,
    regions,
    commit_step,
    keep_supported,
    on_step=None,
    defences=(),
    events=None,
) -> int:
    """Decode the canvas `x` in place under `cfg.decoding` (not exact), as `generate` set it up
    (prefill placed, interventions planned, ban regions found); returns the forward passes run.
    `on_step(step, canvas)` as in `generate`, after every step that committed tokens (the step: the
    most any row has taken, since rows step on their own under the threshold rule). `defences`
    (mosa.sampling.defences) act at each step as in the exact loop, and write what they did into
    `events` (one dict per row)."""
    batch, total = x.shape
    prompt_len = total - cfg.gen_length
    mask_id, device = cfg.mask_id, x.device
    num_blocks = cfg.gen_length // cfg.block_length
    steps_per_block = cfg.steps // num_blocks
    by_threshold = cfg.threshold is not None
    confidence_rule = get_remasking_rule(cfg.remasking)
    cache = None if cfg.decoding == "threshold" else CanvasCache(model, attention_mask, cfg, batch, total)
    row_step = torch.zeros(batch, dtype=torch.long, device=device)  # the steps each row has taken
    pending = _pending_interventions(planned, batch)  # row -> [(step, position, tokens)], by step
    ended = torch.zeros(batch, dtype=torch.bool, device=device)  # rows a defence ended: nothing more is decoded for them
    passes = 0

    for block in range(num_blocks):
        block_start = prompt_len + block * cfg.block_length
        block_end = block_start + cfg.block_length
        block_regions = [region for region in regions.get(block, []) if not ended[region[0]]]
        if block_regions:
            steps = row_step.tolist()
            passes += _decode_ban_regions(
                model, x, attention_mask, prompt_index, cfg, keys, commit_step, block_regions, steps, keep_supported
            )
        block_steps = torch.zeros(batch, dtype=torch.long, device=device)  # the steps each row took in this block
        schedule = None if by_threshold else commit_schedule((x[:, block_start:block_end] == mask_id).sum(dim=1), steps_per_block)
        refresh = torch.ones(batch, dtype=torch.bool, device=device)  # rows whose cache must be built anew
        while True:
            if by_threshold:  # a row steps while its block holds masks (and at most block_length times)
                active = (x[:, block_start:block_end] == mask_id).any(dim=1) & (block_steps < cfg.block_length)
            else:  # every row steps through the block's steps together, as in the exact loop
                if int(block_steps[0]) == steps_per_block:
                    break
                active = torch.ones(batch, dtype=torch.bool, device=device)
            touched = _intervene_due(x, commit_step, prompt_len, pending, row_step, active & ~ended)
            if bool(touched.any()):
                refresh |= touched
                if by_threshold:
                    active &= (x[:, block_start:block_end] == mask_id).any(dim=1)
                else:  # the masks left are spread anew over the remaining steps, as the exact loop does
                    step = int(block_steps[0])
                    remaining = (x[touched, block_start:block_end] == mask_id).sum(dim=1)
                    schedule[touched, step:] = commit_schedule(remaining, steps_per_block - step)
            if not bool(active.any()):
                break
            k = torch.ones(batch, dtype=torch.long, device=device) if by_threshold else schedule[:, int(block_steps[0])]
            k = torch.where(active, k, 0)
            if bool(k.any()):
                if cache is None:  # as the exact loop: every mask up to the block's end is a candidate
                    window_start = int((x[:, :block_end] == mask_id).any(dim=0).nonzero()[0])
                    logits = window_logits(model, x, attention_mask, prompt_index, cfg, window_start, block_end, keep_supported)
                    passes += 1
                else:
                    window_start = block_start
                    logits, ran = cache.block_logits(x, block_start, block_end, refresh)
                    refresh[:] = False
                    passes += ran
                if defences:
                    ending = terminate_rows(
                        defences,
                        logits,
                        x,
                        window_start,
                        block_start,
                        block_end,
                        k > 0,
                        row_step.tolist(),
                        commit_step,
                        events,
                        cfg,
                    )
                    if bool(ending.any()):  # their masks are EOS now: nothing left to commit, in this block or later
                        ended |= ending
                        k = torch.where(ending, 0, k)
                        if schedule is not None:
                            schedule[ending] = 0
                block_step = int(block_steps[0])  # the same for every row where the steps' schedule commits
                _commit(
                    x, logits, window_start, block_end, k, row_step, commit_step, keys, confidence_rule, cfg, defences, block_step
                )
            row_step += active.long()
            block_steps += active.long()
            if on_step is not None and bool(k.any()):
                on_step(int(row_step.max()), x)

    # Interventions at steps a row never reached: written over its final canvas (not over a response a defence ended).
    _intervene_due(x, commit_step, prompt_len, pending, None, ~ended)
    return passes


def _commit(
    x, logits, window_start, block_end, k, row_step, commit_step, keys, confidence_rule, cfg, defences, block_step
) -> None:
    """One step on the candidate window [window_start, block_end): choose tokens, score them (and
    let the defences change the scores) and commit, per row, the k most confident masks and, under
    the threshold rule, every other mask whose confidence reaches the threshold. block_step: the
    step's place in its block under the steps' schedule."""
    prompt_len = x.shape[1] - cfg.gen_length
    window = x[:, window_start:block_end]
    is_masked = (window == cfg.mask_id) & (k > 0).unsqueeze(1)
    noise = StepNoise(cfg.seed, keys, row_step.tolist(), is_masked, committing=k > 0)
    if cfg.logits_eos_inf:
        logits[:, :, cfg.eos_id] = -torch.inf
    x0 = _choose_tokens(logits, cfg.temperature, noise)
    if cfg.confidence_eos_eot_inf:  # as the exact loop reproduces the reference (docs/sampler.md)
        logits[:, :, cfg.eot_id] = -torch.inf
        if cfg.temperature == 0:
            logits[:, :, cfg.eos_id] = -torch.inf
    confidence = confidence_rule(logits, x0, noise)
    steps_per_block = cfg.steps // (cfg.gen_length // cfg.block_length)
    for defence in defences:
        confidence = defence.confidence(confidence, is_masked, k > 0, keys, row_step.tolist(), block_step, steps_per_block, cfg)
    commit = top_k_commits(confidence, is_masked, k, window_start, x.shape[1])
    if cfg.threshold is not None:
        commit |= is_masked & (confidence >= cfg.threshold)
    x[:, window_start:block_end] = torch.where(commit, x0, window)
    in_response = max(prompt_len - window_start, 0)  # window columns that lie in the prompt
    span = commit_step[:, window_start + in_response - prompt_len : block_end - prompt_len]
    span.copy_(torch.where(commit[:, in_response:], row_step.unsqueeze(1), span))


def _pending_interventions(planned, batch) -> list[list[tuple[int, int, torch.Tensor]]]:
    """{step: [(row, position, tokens)]} -> per row, [(step, position, tokens)] by step."""
    pending: list[list[tuple[int, int, torch.Tensor]]] = [[] for _ in range(batch)]
    for step in sorted(planned):
        for row, position, tokens in planned[step]:
            pending[row].append((step, position, tokens))
    return pending


def _intervene_due(x, commit_step, prompt_len, pending, row_step, active) -> torch.Tensor:
    """Write, for each active row, the interventions planned for its current step (row_step None:
    every one left); returns the rows written to (B bool)."""
    touched = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for row in active.nonzero().flatten().tolist():
        while pending[row] and (row_step is None or pending[row][0][0] == int(row_step[row])):
            step, position, tokens = pending[row].pop(0)
            touched |= _intervene(x, commit_step, prompt_len, [(row, position, tokens)], step)
    return touched


class CanvasCache:
    """The keys and values of the canvas outside the positions that run, reused within a block.

    prefix-cache keeps [0, block start); dual-cache also [block end, end of canvas). With Dream's
    shifted logits the block's tokens are predicted from the positions one before them, so the
    running positions start one earlier.
    """

    def __init__(self, model, attention_mask, cfg, batch: int, total: int):
        if not callable(getattr(model, "canvas_positions", None)):
            raise MosaError(
                f"decoding={cfg.decoding} needs a model that takes a KV cache: load LLaDA, MMaDA, Dream or a Llama with "
                "mosa.models.load_model without trust_remote_code, or use decoding exact or threshold"
            )
        from transformers import DynamicCache

        self.model, self.cfg, self.total = model, cfg, total
        self.attention_mask = attention_mask
        self.positions = model.canvas_positions(attention_mask, batch, total)
        self.new_cache = lambda: DynamicCache(config=model.config)
        self.cache = None
        self.mask = None  # the attention mask in the cache's order: kept positions, then running ones

    def block_logits(self, x, block_start: int, block_end: int, refresh: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Logits for the block's tokens (B x block_length x V), aligned as the exact loop's, and the
        forward passes run. `refresh` (B bool): the rows whose kept keys and values are computed anew
        from the whole canvas (all of them at a block's first step); the others run from the cache.
        Some rows but not all (an intervention) costs both passes, so that no row depends on its batch."""
        shift = int(self.cfg.shift_logits)
        start = block_start - shift
        end = self.total if self.cfg.decoding == "prefix-cache" else block_end
        if not bool(refresh.any()):
            return self._from_cache(x, start, end), 1
        old_cache = self.cache
        old_logits = None if bool(refresh.all()) else self._from_cache(x, start, end)
        logits = self._refreshed(x, start, end)
        if old_logits is None:
            return logits, 1
        kept_rows = ~refresh
        for new, old in zip(self.cache.layers, old_cache.layers):
            new.keys[kept_rows], new.values[kept_rows] = old.keys[kept_rows], old.values[kept_rows]
        return torch.where(refresh[:, None, None], logits, old_logits), 2

    def _refreshed(self, x, start: int, end: int) -> torch.Tensor:
        """Run the whole canvas, kept positions first, and keep their keys and values."""
        device = x.device
        kept = torch.cat([torch.arange(0, start, device=device), torch.arange(end, self.total, device=device)])
        order = torch.cat([kept, torch.arange(start, end, device=device)])
        self.cache = self.new_cache()
        self.mask = None if self.attention_mask is None else self.attention_mask[:, order]
        return self._run(x[:, order], self.positions[:, order], len(kept) + self._predicting(device), end - start)

    def _from_cache(self, x, start: int, end: int) -> torch.Tensor:
        return self._run(x[:, start:end], self.positions[:, start:end], self._predicting(x.device), end - start)

    def _predicting(self, device) -> torch.Tensor:
        """The running positions whose outputs predict the block's tokens: its first block_length."""
        return torch.arange(self.cfg.block_length, device=device)

    def _run(self, inputs, positions, keep, running: int) -> torch.Tensor:
        logits = self.model(
            inputs, attention_mask=self.mask, position_ids=positions, cache=self.cache, logits_to_keep=keep
        ).logits
        self.cache.crop(-running)  # keep only the kept positions' keys and values
        return logits
