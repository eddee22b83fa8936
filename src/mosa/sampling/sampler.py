"""The masked-diffusion sampler: LLaDA's `generate()`, exact, faster, with prefill and a trace.

The algorithm (see docs/sampler.md for the reference it reproduces):

    canvas = [prompt ; gen_length masks]
    for each block of block_length response positions (left to right):
        spread the block's masks evenly over steps_per_block steps (remainder first)
        for each step:
            logits = model(canvas)                    (with cfg: guided logits)
            x0 = argmax (or Gumbel-max) of the logits at every candidate position
            confidence = remasking rule (x0, logits), -inf where not masked
            commit the k most confident masked positions: canvas = x0 there

At temperature 0 with `low_confidence` remasking the output equals the reference token for token,
ties included: equal confidences are common (EOS/EoT set to confidence 0 by `confidence_eos_eot_inf`,
bf16 probabilities near 1), and the reference leaves them to `torch.topk` over a full canvas row,
whose order among equal values depends on the whole row it is given; so each row is ranked by
`torch.topk` over that same row (prompt + response, -inf everywhere but the masked candidates).
What makes it faster without changing a token:
  - the output head and the softmax run only on the candidate window (normally the current block),
    not on the whole canvas, when the model accepts `logits_to_keep` (Hugging Face models do);
  - a step at which no row commits anything (possible with prefill) skips the forward pass.
What it adds: tokens prefilled at any response positions, tokens written over the canvas at chosen
denoising steps (interventions), token sequences banned from starting at chosen response positions
(bans, decoded left to right there), the step at which each response position was committed, more
remasking rules, Dream's shifted logits.

Randomness per prompt: at temperature > 0 (Gumbel noise) and for `random` remasking, each row's
noise derives from the run seed, the row's prompt (its id when given, and its token ids) and the
step (mosa.sampling.noise), so a row's sample depends neither on its batch, nor on its neighbours,
nor on the batch size. Temperature 0 with a deterministic rule draws no noise at all.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from mosa.errors import MosaError
from mosa.sampling.defences import build_defences, terminate_rows
from mosa.sampling.noise import StepNoise, prompt_keys
from mosa.sampling.remasking import get_remasking_rule

# {response position: token ids}, the same for every row, or one such mapping per row.
Prefill = Mapping[int, Sequence[int] | torch.Tensor]
# {global step: {response position: token ids}}: written over the canvas just before that step's
# forward pass; the same for every row, or one such mapping per row.
Interventions = Mapping[int, Prefill]
# {response position: [token sequences]}: sequences the response may not hold starting at that
# position; the same for every row, or one such mapping per row.
Bans = Mapping[int, Sequence[Sequence[int]]]


@dataclass
class SamplerConfig:
    """Sampler settings. Defaults reproduce the LLaDA reference (temperature 0, low confidence).

    Special ids have no defaults: they belong to the model, so take them from its tokenizer
    (`DiffusionLM.sampler_config()` does).
    """

    gen_length: int = 128
    steps: int = 128
    block_length: int = 32
    temperature: float = 0.0
    cfg_scale: float = 0.0
    remasking: str = "low_confidence"
    mask_id: int | None = None
    eos_id: int | None = None
    eot_id: int | None = None
    # Set the EOS logit to -inf before choosing tokens (LLaDA's Appendix B.4).
    logits_eos_inf: bool = False
    # The reference's `confidence_eos_eot_inf`, reproduced as the reference behaves (see
    # docs/sampler.md): after tokens are chosen, the EoT column of the logits (and, at temperature 0,
    # where the reference's noisy logits alias its logits, the EOS column too) is set to -inf before
    # confidences are computed.
    confidence_eos_eot_inf: bool = False
    # Dream predicts position i from hidden state i-1; its logits must be shifted right by one.
    shift_logits: bool = False
    seed: int = 0
    # Approximate decodings, opt-in (mosa.sampling.fast, docs/sampler.md "Fast decoding"): "exact" is
    # this module's loop; "threshold" commits, per step, every masked position of the block whose
    # confidence reaches `threshold` (at least the most confident one); "prefix-cache" and
    # "dual-cache" reuse the keys and values of the prompt and finished blocks (and of the masked
    # suffix) within a block, with `threshold`'s rule when it is set, else the steps' schedule.
    decoding: str = "exact"
    threshold: float | None = None
    # Training-free defences, off by default (mosa.sampling.defences, docs/sampler.md "Defences"):
    # [{name: ..., OPTION: VALUE}] or bare names, e.g. [{"name": "eos-monitor", "threshold": 0.5}].
    defences: list = field(default_factory=list)

    def validate(self, require_ids: bool = True) -> None:
        """Raise MosaError naming the first bad setting. Without `require_ids`, the special ids
        (which come from the model) are not checked, so settings can be checked before loading."""
        get_remasking_rule(self.remasking)
        for name in ("gen_length", "steps", "block_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise MosaError(f"{name}={value!r} must be a positive integer")
        for name in ("temperature", "cfg_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise MosaError(f"{name}={value!r} must be a number >= 0")
        if self.gen_length % self.block_length:
            raise MosaError(f"block_length={self.block_length} must divide gen_length={self.gen_length}")
        num_blocks = self.gen_length // self.block_length
        if self.steps % num_blocks:
            raise MosaError(
                f"steps={self.steps} must be a multiple of the number of blocks (gen_length/block_length = {num_blocks})"
            )
        if self.steps > self.gen_length:
            raise MosaError(f"steps={self.steps} exceeds gen_length={self.gen_length}; at most one step per token")
        self._validate_decoding()
        defences = build_defences(self.defences)
        if require_ids and self.mask_id is None:
            raise MosaError("mask_id is not set; take it from the model (DiffusionLM.sampler_config()) or pass it")
        for defence in defences:
            defence.check(self)
        if not require_ids:
            return
        if self.logits_eos_inf and self.eos_id is None:
            raise MosaError("logits_eos_inf needs eos_id; take it from the model's tokenizer")
        if self.confidence_eos_eot_inf and (self.eos_id is None or self.eot_id is None):
            raise MosaError("confidence_eos_eot_inf needs eos_id and eot_id; take them from the model's tokenizer")

    def _validate_decoding(self) -> None:
        if self.decoding not in DECODINGS:
            raise MosaError(f"decoding={self.decoding!r} must be one of {', '.join(DECODINGS)}")
        if self.threshold is not None:
            value = self.threshold
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
                raise MosaError(f"threshold={value!r} must be a confidence in (0, 1], e.g. 0.9")
            if self.decoding == "exact":
                raise MosaError("threshold is set but decoding is exact; set decoding to threshold, prefix-cache or dual-cache")
        if self.decoding == "threshold" and self.threshold is None:
            raise MosaError("decoding=threshold needs a threshold in (0, 1], e.g. threshold=0.9")
        if self.decoding in ("prefix-cache", "dual-cache"):
            if self.block_length >= self.gen_length:
                raise MosaError(
                    f"decoding={self.decoding} caches finished blocks, so it needs block_length < gen_length "
                    f"(here {self.block_length} and {self.gen_length}); use smaller blocks"
                )
            if self.cfg_scale > 0:
                raise MosaError(f"decoding={self.decoding} does not support cfg_scale > 0; use decoding exact or threshold")


# What SamplerConfig.decoding may name; every one but exact changes tokens (docs/sampler.md).
DECODINGS = ("exact", "threshold", "prefix-cache", "dual-cache")


@dataclass
class GenerationOutput:
    sequences: torch.Tensor  # B x (P + gen_length): prompt and response
    # B x gen_length: the global step that committed each position; -1 = prefilled, or never picked
    # (a position may stay masked, mosa.sampling.order); a position an intervention wrote at step t records t,
    # a ban's region the first step of the block holding the ban (decoded just before it)
    commit_step: torch.Tensor
    prompt_length: int
    # Calls of the model for the whole batch (a cfg pass, both branches in one batch, counts once).
    forward_passes: int = 0
    # Per row, what its defences did (mosa.sampling.defences): {} when none acted, else e.g.
    # {"eos-monitor": {"step": 5, "score": 0.83}} (the response ended at step 5 as a refusal).
    defence_events: list[dict] = field(default_factory=list)

    @property
    def response(self) -> torch.Tensor:  # B x gen_length
        return self.sequences[:, self.prompt_length :]


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    config: SamplerConfig,
    prefill: Prefill | Sequence[Prefill] | None = None,
    interventions: Interventions | Sequence[Interventions] | None = None,
    bans: Bans | Sequence[Bans] | None = None,
    prompt_ids: Sequence[str] | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> GenerationOutput:
    """Sample responses for a left-padded batch of prompts (B x P).

    `prefill` fixes tokens in the initial canvas. `interventions` write tokens over the canvas at
    later steps (anchoring, priming): at global step t, before that step's forward pass, the given
    response positions take the given tokens, whether they were masked or already decoded; they then
    count as committed at step t and are never remasked.

    `bans` forbid token sequences from starting at given response positions (EPT's negative
    prefixes: the answer must not open with "I cannot"). A ban's region, [position, position + its
    longest sequence), is decoded apart, left to right: when the sampler reaches the block holding
    the position, before that block's first step, it commits the region's tokens one per forward
    pass, in order. At each it sets to -inf the logit of every token that would complete a banned
    sequence given the region's tokens committed before it, and the mask token's, then chooses the
    token as a step does (argmax, or Gumbel-max at temperature > 0). So no banned sequence can form
    (the region never holds a mask to be decoded later, unchecked), and the block is then
    sampled as usual around the region. Cost: one forward pass per region position (rows in
    parallel). The region's positions record that block's first step as their commit step. A region
    may not overlap a prefill, an intervention or another region of its row.

    `prompt_ids`, one per row, key each row's noise (temperature > 0, random remasking): a row draws
    from `config.seed`, its prompt id and its prompt's token ids alone, so its sample does not depend
    on the batch it is sampled in. Equal prompts under equal ids (or none) draw equal noise: give
    each copy of a prompt an id of its own to get several samples of it.

    `on_step(global_step, canvas)`, when given, is called after every step that committed tokens,
    with the canvas (B x (P + gen_length), to read, not to change): how `mosa serve` streams each
    response's committed prefix as it grows. An exception it raises stops sampling there.
    """
    cfg = config
    cfg.validate()
    confidence_rule = get_remasking_rule(cfg.remasking)
    _check_prompt(model, input_ids, attention_mask, cfg)
    keys = prompt_keys(input_ids, attention_mask, prompt_ids)
    batch, prompt_len = input_ids.shape
    gen_length, mask_id, device = cfg.gen_length, cfg.mask_id, input_ids.device

    x = torch.full((batch, prompt_len + gen_length), mask_id, dtype=torch.long, device=device)
    x[:, :prompt_len] = input_ids
    if attention_mask is not None:
        ones = torch.ones((batch, gen_length), dtype=attention_mask.dtype, device=device)
        attention_mask = torch.cat([attention_mask, ones], dim=-1)
    # cfg's unconditional branch masks the prompt only: prefilled response tokens stay visible in
    # both branches, as tokens committed at earlier steps do in the reference.
    prompt_index = x != mask_id
    _place_prefill(x, prompt_len, prefill, cfg)
    planned = _plan_interventions(interventions, batch, cfg)
    regions = _plan_bans(bans, x, planned, cfg)  # {block: [(row, ban position, banned sequences)]}
    commit_step = torch.full((batch, gen_length), -1, dtype=torch.long, device=device)

    num_blocks = gen_length // cfg.block_length
    steps_per_block = cfg.steps // num_blocks
    keep_supported = accepts_logits_to_keep(model)
    defences = build_defences(cfg.defences)
    events: list[dict] = [{} for _ in range(batch)]  # per row, what its defences did
    if cfg.decoding != "exact":
        from mosa.sampling.fast import decode_fast  # imported here: it builds on this module's helpers

        passes = decode_fast(
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
            on_step,
            defences,
            events,
        )
        return GenerationOutput(
            sequences=x, commit_step=commit_step, prompt_length=prompt_len, forward_passes=passes, defence_events=events
        )
    forward_passes = 0
    ended = torch.zeros(batch, dtype=torch.bool, device=device)  # rows a defence ended: nothing more is decoded for them

    for block in range(num_blocks):
        block_start = prompt_len + block * cfg.block_length
        block_end = block_start + cfg.block_length
        block_regions = [region for region in regions.get(block, []) if not ended[region[0]]]
        if block_regions:
            forward_passes += _decode_ban_regions(
                model,
                x,
                attention_mask,
                prompt_index,
                cfg,
                keys,
                commit_step,
                block_regions,
                block * steps_per_block,
                keep_supported,
            )
        block_masks = (x[:, block_start:block_end] == mask_id).sum(dim=1)
        schedule = commit_schedule(block_masks, steps_per_block)  # B x steps_per_block

        for step in range(steps_per_block):
            global_step = block * steps_per_block + step
            writes = [write for write in planned.get(global_step, []) if not ended[write[0]]]
            if writes:
                touched = _intervene(x, commit_step, prompt_len, writes, global_step)  # B bool
                # The block may have lost masks: spread the ones left over its remaining steps, as the
                # schedule does at a block's start (rows not touched keep their schedule exactly).
                remaining = (x[touched, block_start:block_end] == mask_id).sum(dim=1)
                schedule[touched, step:] = commit_schedule(remaining, steps_per_block - step)
            k = schedule[:, step]  # B
            if not bool(k.any()):
                continue
            # Candidates: every mask up to the block's end. Normally that is the block, but the
            # reference also lets masks in the prompt (DIJA-style) or masks the model itself
            # predicted at earlier steps compete, and so does this sampler.
            window_start = int((x[:, :block_end] == mask_id).any(dim=0).nonzero()[0])
            window = x[:, window_start:block_end]  # B x K
            is_masked = window == mask_id
            noise = StepNoise(cfg.seed, keys, global_step, is_masked, committing=k > 0)

            logits = window_logits(
                model, x, attention_mask, prompt_index, cfg, window_start, block_end, keep_supported
            )  # B x K x V
            forward_passes += 1
            if defences:
                ending = terminate_rows(
                    defences, logits, x, window_start, block_start, block_end, k > 0, global_step, commit_step, events, cfg
                )
                if bool(ending.any()):  # their masks are EOS now: nothing left to commit, in this block or later
                    ended |= ending
                    schedule[ending] = 0
                    k = torch.where(ending, 0, k)
                    is_masked = window == mask_id
            if cfg.logits_eos_inf:
                logits[:, :, cfg.eos_id] = -torch.inf
            x0 = _choose_tokens(logits, cfg.temperature, noise)  # B x K
            if cfg.confidence_eos_eot_inf:
                logits[:, :, cfg.eot_id] = -torch.inf
                if cfg.temperature == 0:
                    logits[:, :, cfg.eos_id] = -torch.inf
            confidence = confidence_rule(logits, x0, noise)  # B x K
            for defence in defences:
                confidence = defence.confidence(confidence, is_masked, k > 0, keys, global_step, step, steps_per_block, cfg)

            commit = top_k_commits(confidence, is_masked, k, window_start, x.shape[1])  # B x K
            x[:, window_start:block_end] = torch.where(commit, x0, window)
            in_response = max(prompt_len - window_start, 0)  # window columns that lie in the prompt
            response_span = commit_step[:, window_start + in_response - prompt_len : block_end - prompt_len]
            response_span[commit[:, in_response:]] = global_step
            if on_step is not None:
                on_step(global_step, x)

    return GenerationOutput(
        sequences=x, commit_step=commit_step, prompt_length=prompt_len, forward_passes=forward_passes, defence_events=events
    )


def commit_schedule(mask_counts: torch.Tensor, steps: int) -> torch.Tensor:
    """Tokens to commit per step: n // steps each, the first n % steps steps one more. B -> B x steps."""
    base = mask_counts // steps
    remainder = mask_counts % steps
    extra = torch.arange(steps, device=mask_counts.device) < remainder.unsqueeze(1)
    return base.unsqueeze(1) + extra.long()


def top_k_commits(confidence, is_masked, k, window_start, canvas_length) -> torch.Tensor:
    """Per row, the k[row] most confident masked candidates, chosen exactly as the reference chooses.

    confidence, is_masked: B x K, canvas columns [window_start, window_start + K); k: B -> B x K bool.
    The reference calls torch.topk on each full canvas row (canvas_length values: prompt and
    response, -inf after the block and wherever the canvas is not masked). Which of several equal
    values torch.topk returns depends on the whole row it is given, so the same row is built here
    (the columns outside the window are -inf in the reference too) and ranked the same way.
    """
    batch, width = confidence.shape
    rows = confidence.new_full((batch, canvas_length), -torch.inf)  # B x T, in the confidences' dtype
    rows[:, window_start : window_start + width] = torch.where(is_masked, confidence, -torch.inf)
    picked = torch.zeros(rows.shape, dtype=torch.bool, device=rows.device)  # B x T
    for row, count in enumerate(k.tolist()):
        if count:
            picked[row, torch.topk(rows[row], count).indices] = True
    # A row's count never exceeds the masks left in its block (the counts sum to them, and are spread
    # anew after an intervention), all of which are candidates, so topk returns no -inf position; if
    # it ever did, that position is not a mask and is not committed.
    return picked[:, window_start : window_start + width] & is_masked


def _choose_tokens(logits: torch.Tensor, temperature: float, noise: StepNoise) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(dim=-1)
    # Gumbel-max in float64, as the reference: argmax exp(l) / (-log u)^T samples softmax(l / T).
    uniform = noise.uniform(logits.shape[-1], dtype=torch.float64)  # B x K x V
    return (logits.to(torch.float64).exp() / (-torch.log(uniform)) ** temperature).argmax(dim=-1)


def window_logits(model, x, attention_mask, prompt_index, cfg, start, end, keep_supported):
    """Logits at canvas positions [start, end), aligned (position i predicts token i). B x K x V.

    With cfg.cfg_scale > 0, the guided logits: each row is read twice, as given and with the positions
    `prompt_index` marks (B x T) masked, and u + (cfg_scale + 1) (c - u) combines the two readings (also
    the lm-eval model's loglikelihood, mosa.utility.model). `keep_supported`: whether `model` takes
    `logits_to_keep` (accepts_logits_to_keep), to run its output head on the window alone."""
    if cfg.cfg_scale > 0:
        unconditional = x.clone()
        unconditional[prompt_index] = cfg.mask_id
        inputs = torch.cat([x, unconditional], dim=0)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask, attention_mask], dim=0)
    else:
        inputs = x

    if keep_supported:
        positions = torch.arange(start, end, device=x.device)
        if cfg.shift_logits:  # token i is predicted at position i - 1; position 0 by itself (aligned_logits)
            positions = (positions - 1).clamp(min=0)
        logits = model(inputs, attention_mask=attention_mask, logits_to_keep=positions).logits
    else:
        logits = aligned_logits(model(inputs, attention_mask=attention_mask).logits, cfg.shift_logits)
        logits = logits[:, start:end]

    if cfg.cfg_scale > 0:
        conditional, unconditional_logits = torch.chunk(logits, 2, dim=0)
        logits = unconditional_logits + (cfg.cfg_scale + 1) * (conditional - unconditional_logits)
    return logits


def aligned_logits(logits: torch.Tensor, shifted: bool) -> torch.Tensor:
    """Make position i hold the prediction for token i (Dream's logits are one position late)."""
    if not shifted:
        return logits
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether model.forward takes `logits_to_keep` (Hugging Face models, mosa's wrappers)."""
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _place_prefill(x, prompt_len, prefill, cfg) -> None:
    """Write prefill tokens into the canvas; they are not masks, so they are never decoded."""
    if prefill is None:
        return
    batch = x.shape[0]
    for row, spans in enumerate(_per_row(prefill, batch, "prefill")):
        for position, tokens in _checked_spans(spans, "prefill", "prefill", row, cfg):
            x[row, prompt_len + position : prompt_len + position + len(tokens)] = tokens.to(x.device)


def _plan_interventions(interventions, batch, cfg) -> dict[int, list[tuple[int, int, torch.Tensor]]]:
    """Check every intervention before sampling starts; returns {global step: [(row, position, tokens)]}."""
    planned: dict[int, list[tuple[int, int, torch.Tensor]]] = {}
    if interventions is None:
        return planned
    for row, by_step in enumerate(_per_row(interventions, batch, "interventions")):
        for step, spans in by_step.items():
            if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < cfg.steps:
                raise MosaError(
                    f"intervention at step {step!r} is outside the denoising steps [0, {cfg.steps}); use 0 .. steps-1"
                )
            for position, tokens in _checked_spans(spans, f"intervention at step {step}", "intervention", row, cfg):
                planned.setdefault(step, []).append((row, position, tokens))
    return planned


def _intervene(x, commit_step, prompt_len, writes, step) -> torch.Tensor:
    """Write one step's interventions over the canvas; returns the rows touched (B bool)."""
    touched = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for row, position, tokens in writes:
        end = position + len(tokens)
        x[row, prompt_len + position : prompt_len + end] = tokens.to(x.device)
        commit_step[row, position:end] = step
        touched[row] = True
    return touched


def _plan_bans(bans, x, planned, cfg) -> dict[int, list[tuple[int, int, list[list[int]]]]]:
    """Check every ban before sampling starts; returns {block: [(row, ban position, banned sequences)]}.
    A ban's region must still be masked once prefill is placed (x), and no intervention may write in it."""
    regions: dict[int, list[tuple[int, int, list[list[int]]]]] = {}
    if bans is None:
        return regions
    prompt_len = x.shape[1] - cfg.gen_length
    written = torch.zeros((x.shape[0], cfg.gen_length), dtype=torch.bool)  # B x gen_length: what interventions write
    for writes in planned.values():
        for row, position, tokens in writes:
            written[row, position : position + len(tokens)] = True
    for row, row_bans in enumerate(_per_row(bans, x.shape[0], "bans")):
        taken = torch.zeros(cfg.gen_length, dtype=torch.bool)  # this row's regions so far
        for position, sequences in sorted(row_bans.items()):
            sequences = _checked_ban(position, sequences, cfg)
            end = position + max(map(len, sequences))
            if bool((x[row, prompt_len + position : prompt_len + end] != cfg.mask_id).any()):
                raise MosaError(f"the ban at response position {position} overlaps a prefill span in row {row}; ban elsewhere")
            if bool(written[row, position:end].any()) or bool(taken[position:end].any()):
                raise MosaError(
                    f"the ban at response position {position} spans [{position}, {end}), which an intervention or "
                    f"another ban of row {row} also covers"
                )
            taken[position:end] = True
            regions.setdefault(position // cfg.block_length, []).append((row, position, sequences))
    return regions


def _checked_ban(position, sequences, cfg) -> list[list[int]]:
    """One ban's sequences as lists of ids, each non-empty, free of mask tokens and inside the response."""
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < cfg.gen_length:
        raise MosaError(f"ban at response position {position!r}: it must be an integer in [0, {cfg.gen_length})")
    checked = [torch.as_tensor(sequence, dtype=torch.long).flatten().tolist() for sequence in sequences]
    if not checked or not all(checked):
        raise MosaError(f"the ban at response position {position} needs at least one non-empty token sequence")
    for sequence in checked:
        if position + len(sequence) > cfg.gen_length:
            raise MosaError(
                f"the banned sequence {sequence} at response position {position} leaves the response [0, {cfg.gen_length})"
            )
        if cfg.mask_id in sequence:
            raise MosaError(f"the banned sequence {sequence} contains mask_id {cfg.mask_id}")
    return checked


def _decode_ban_regions(model, x, attention_mask, prompt_index, cfg, keys, commit_step, regions, step, keep_supported) -> int:
    """Decode the regions of the bans that lie in this block, left to right: at each forward pass every
    row with a region commits its next region position, with the tokens that would complete a banned
    sequence there forbidden. regions: [(row, ban position, banned sequences)]; step: the block's first
    (one for every row, or, for the fast decodings, where rows step apart, a list of one per row).
    Returns the forward passes it ran."""
    prompt_len = x.shape[1] - cfg.gen_length
    queues: dict[int, list[tuple[int, int, list[list[int]]]]] = {}  # row -> [(response position, ban position, sequences)]
    for row, start, sequences in sorted(regions):
        length = max(map(len, sequences))
        queues.setdefault(row, []).extend((start + offset, start, sequences) for offset in range(length))

    for turn in range(max(map(len, queues.values()))):
        due = {row: queue[turn] for row, queue in queues.items() if turn < len(queue)}
        window_start = prompt_len + min(position for position, _, _ in due.values())
        window_end = prompt_len + max(position for position, _, _ in due.values()) + 1
        logits = window_logits(model, x, attention_mask, prompt_index, cfg, window_start, window_end, keep_supported)
        if cfg.logits_eos_inf:
            logits[:, :, cfg.eos_id] = -torch.inf
        decoding = torch.zeros(logits.shape[:2], dtype=torch.bool, device=x.device)  # B x K: the column each row commits
        for row, (position, start, sequences) in due.items():
            column = prompt_len + position - window_start
            decoding[row, column] = True
            committed = x[row, prompt_len + start : prompt_len + position].tolist()
            # Never the mask token either: a position left masked would be decoded later, unchecked.
            logits[row, column, completing_tokens(sequences, committed) + [cfg.mask_id]] = -torch.inf
        # A region position draws noise of its own (its position in the key), apart from the block's steps.
        ban_keys = [f"{key}\0ban {due[row][0]}" if row in due else key for row, key in enumerate(keys)]
        x0 = _choose_tokens(logits, cfg.temperature, StepNoise(cfg.seed, ban_keys, step, decoding, decoding.any(dim=1)))
        for row, (position, _, _) in due.items():
            x[row, prompt_len + position] = x0[row, prompt_len + position - window_start]
            commit_step[row, position] = step if isinstance(step, int) else step[row]
    return max(map(len, queues.values()))


def completing_tokens(sequences: list[list[int]], committed: list[int]) -> list[int]:
    """The tokens that, placed after `committed` (a ban region's tokens so far), would complete one of
    the banned sequences."""
    return [sequence[-1] for sequence in sequences if sequence[:-1] == committed]


def _per_row(spec, batch: int, what: str) -> list:
    """One mapping for every row, or a sequence of one mapping per row."""
    per_row = [spec] * batch if isinstance(spec, Mapping) else list(spec)
    if len(per_row) != batch:
        raise MosaError(f"{what} has {len(per_row)} entries for a batch of {batch}; give one mapping per row or one for all")
    return per_row


def _checked_spans(spans, what: str, kind: str, row: int, cfg) -> list[tuple[int, torch.Tensor]]:
    """{response position: token ids} -> sorted (position, tokens) spans, each inside the response,
    non-empty, free of mask tokens, and not overlapping another span of the same mapping.
    `what` names the mapping in messages ("prefill", "intervention at step 3"), `kind` its sort."""
    checked: list[tuple[int, torch.Tensor]] = []
    covered = torch.zeros(cfg.gen_length, dtype=torch.bool)
    for position in spans:
        if not isinstance(position, int) or isinstance(position, bool):
            raise MosaError(f"{what}: response position {position!r} must be an integer")
    for position, tokens in sorted(spans.items()):
        tokens = torch.as_tensor(tokens, dtype=torch.long).flatten()
        end = position + len(tokens)
        if len(tokens) == 0:
            raise MosaError(f"{what} at response position {position} is empty; give at least one token")
        if position < 0 or end > cfg.gen_length:
            raise MosaError(
                f"{what} at response position {position} spans [{position}, {end}), outside the response [0, {cfg.gen_length}); "
                "move it or raise gen_length"
            )
        if bool((tokens == cfg.mask_id).any()):
            raise MosaError(
                f"{what} at response position {position} contains mask_id {cfg.mask_id}; leave masked positions out of it"
            )
        if bool(covered[position:end].any()):
            raise MosaError(f"{what} at response position {position} overlaps another {kind} span in row {row}")
        covered[position:end] = True
        checked.append((position, tokens))
    return checked


def _check_prompt(model, input_ids, attention_mask, cfg) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.is_floating_point():
        raise MosaError("input_ids must be an integer tensor of shape batch x prompt_length")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise MosaError(f"input_ids has shape {tuple(input_ids.shape)}: the prompt is empty")
    vocab_size = model_vocab_size(model)
    if vocab_size is not None:
        if not 0 <= cfg.mask_id < vocab_size:
            raise MosaError(f"mask_id={cfg.mask_id} is outside the model's vocabulary [0, {vocab_size})")
        if int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab_size:
            raise MosaError(f"input_ids hold ids outside the model's vocabulary [0, {vocab_size})")
    if attention_mask is None:
        return
    if attention_mask.shape != input_ids.shape:
        raise MosaError(f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids {tuple(input_ids.shape)}")
    empty_rows = (attention_mask.sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty_rows:
        raise MosaError(f"prompt rows {empty_rows} are empty (attention_mask is all zeros)")
    if bool(((attention_mask == 0) & (input_ids == cfg.mask_id)).any()):
        raise MosaError(
            f"the prompt is padded with mask_id={cfg.mask_id}: pad id equals mask id, so padding would be decoded; "
            "pad with another token (LLaDA pads with EOS)"
        )


def model_vocab_size(model: torch.nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if getattr(config, "vocab_size", None):
        return int(config.vocab_size)
    get_embeddings = getattr(model, "get_input_embeddings", None)
    if callable(get_embeddings):
        embeddings = get_embeddings()
        if embeddings is not None and hasattr(embeddings, "num_embeddings"):
            return int(embeddings.num_embeddings)
    return None
