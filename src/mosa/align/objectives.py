"""The training objectives of `mosa align`, found by name (`objective:` in a preset or config,
`--objective NAME` on the command line; options under `objective_options:`). Every objective shares
the trainer (mosa.align.trainer): LoRA or full fine-tuning, the reference model, checkpoints and
resume, DDP, the behaviour monitor and the presets. docs/align.md writes each one out.

    mosa         MOSA (Xie, Song, Luo, AAAI 2026): the window score of a safe sentence minus that of a
                 harmful one, less beta KL, from a fully masked canvas. Initial Alignment is the same
                 objective with the window at the start of the response (`--window initial`).
    a2d          any-order EOS, in the spirit of A2D (Jeung et al., arXiv 2509.23286): LLaDA's masked-
                 diffusion cross-entropy at a random mask ratio, where every masked position of a
                 harmful response targets EOS and benign pairs keep their own tokens.
    primed-mosa  MOSA's reward and KL from contaminated canvases: harmful phrases planted at random
                 positions, part of the rest decoded by the reference model (the priming threat of
                 arXiv 2510.00565), so that the model learns to refuse from such states.

An objective is a class registered with `@OBJECTIVES.register(NAME)`; its constructor takes its
options (checked against its signature: `Registry.build`). It has

    metrics        the figures `terms` returns, in the order metrics.jsonl records them ("objective" first)
    shown          the two figures the progress bar shows
    needs_benign   whether it trains on the benign set (`benign_prompts`) itself
    check_data(prompts, benign)          refuses training data it cannot use; returns what inputs.json
                                         records of it beyond the prompt sets
    prepare(tokenizer, eos_id, config)   tokenises what it needs (with the tokenizer alone, before a
                                         model loads); returns its part of inputs.json
    terms(lm, policy, reference, batch, config)   {figure: tensor} for one micro-batch; the batch
                                         mean of "objective" is maximised
    title(config), panels                the training curve's title and panels (mosa.align.plots)

Every draw an objective makes comes from `batch.draw`, which depends on (seed, step) only, and is
made for the global micro-batch before this process takes its rows, so that a resumed run trains as
an uninterrupted one and N processes as one process with N times the batch.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mosa.align.objective import format_window, mosa_objective, window_offsets
from mosa.align.sentences import encode_sentence, sentence_record
from mosa.data import PromptSet
from mosa.data.records import Example
from mosa.errors import MosaError
from mosa.models import DiffusionLM
from mosa.registry import Registry
from mosa.sampling import aligned_logits

OBJECTIVES: Registry[type] = Registry("objective")


def make_objective(config):
    """The objective a MosaConfig names, built with its `objective_options`."""
    return OBJECTIVES.build(config.objective, dict(config.objective_options or {}))


@dataclass
class Batch:
    """One micro-batch as an objective sees it: this process's rows of the global micro-batch."""

    examples: list[Example]  # training rows (harmful prompts; with their responses for a2d)
    benign: list[Example] | None  # as many rows of the benign set, when the run has one
    draw: random.Random  # the step's draws: a function of (seed, step) only
    rank: int = 0  # this process holds rows [rank * B, (rank + 1) * B) of the global micro-batch
    processes: int = 1

    def own_rows(self, drawn: torch.Tensor) -> torch.Tensor:
        """This process's rows of something drawn for the whole global micro-batch (first dimension)."""
        size = len(self.examples)
        return drawn[self.rank * size : (self.rank + 1) * size]

    def generator(self) -> torch.Generator:
        """A torch generator seeded from the step's draws (CPU: the same numbers on every device)."""
        return torch.Generator().manual_seed(self.draw.getrandbits(63))


def masked_canvas(lm: DiffusionLM, prompts: list[str], response_length: int):
    """[chat prompt ; response_length masks] and its attention mask, B x (P + L); and P."""
    input_ids, attention_mask = lm.encode_chat(prompts, response_length)
    masks = torch.full((len(prompts), response_length), lm.mask_id, dtype=torch.long, device=input_ids.device)
    canvas = torch.cat([input_ids, masks], dim=1)
    visible = torch.cat([attention_mask, torch.ones_like(masks)], dim=1)
    return canvas, visible, input_ids.shape[1]


def policy_logits_of(lm: DiffusionLM, policy, canvas: torch.Tensor, visible: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """The policy's aligned logits over the response positions (B x L x V), with gradients."""
    return aligned_logits(policy(canvas, attention_mask=visible).logits, lm.logits_shifted)[:, prompt_length:]


def reference_logits_of(lm: DiffusionLM, reference, canvas: torch.Tensor, visible: torch.Tensor, prompt_length: int):
    """The reference's aligned logits over the response positions, without gradients: the base
    weights with the adapter switched off (LoRA; `reference` None) or the frozen copy."""
    with torch.no_grad():
        if reference is None:
            with lm.module.disable_adapter():
                return lm.logits(canvas, visible)[:, prompt_length:]
        return aligned_logits(reference(canvas, attention_mask=visible).logits, lm.logits_shifted)[:, prompt_length:]


def response_logits(lm: DiffusionLM, policy, reference, prompts: list[str], response_length: int):
    """Aligned logits of the policy and of the reference over the response positions of a fully
    masked canvas, B x L x V each."""
    canvas, visible, prompt_length = masked_canvas(lm, prompts, response_length)
    return policy_logits_of(lm, policy, canvas, visible, prompt_length), reference_logits_of(
        lm, reference, canvas, visible, prompt_length
    )


def sentence_ids(tokenizer, config, eos_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """The safe sentences (each followed by `eos_id`) and the harmful ones as token ids. Refuses a
    sentence the tokenizer cannot spell or the window cannot hold, up front rather than at step 500."""
    safe = [encode_sentence(tokenizer, sentence, eos_id) for sentence in config.safe_sentences]
    harmful = [encode_sentence(tokenizer, sentence) for sentence in config.harmful_sentences]
    for ids in safe + harmful:
        window_offsets(config.window, len(ids), config.response_length, config.fit)
    return safe, harmful


def sentences_record(tokenizer, config, safe: list[list[int]], harmful: list[list[int]]) -> dict:
    return {
        "safe": sentence_record(tokenizer, config.safe_sentences, safe),
        "harmful": sentence_record(tokenizer, config.harmful_sentences, harmful),
    }


MOSA_PANELS = (
    (
        "reward and its terms",
        "log-probability (nats)",
        (
            ("reward", "reward = R_pos - R_neg", "black"),
            ("R_pos", "R_pos: safe sentence score", "tab:green"),
            ("R_neg", "R_neg: harmful sentence score", "tab:red"),
        ),
    ),
    ("KL(policy || reference)", "KL to the reference (nats)", (("kl", None, "tab:blue"),)),
)


@OBJECTIVES.register("mosa")
class Mosa:
    """MOSA as the paper states it (mosa.align.objective). It takes no options of its own: the window,
    fit, beta, KL reduction, harmful floor and sentences are MosaConfig's."""

    metrics = ("objective", "reward", "R_pos", "R_neg", "kl")
    shown = ("reward", "kl")
    needs_benign = False
    panels = MOSA_PANELS

    def check_data(self, prompts: PromptSet, benign: PromptSet | None) -> dict:
        return {}  # prompts alone: the sentences are the targets

    def prepare(self, tokenizer, eos_id: int, config) -> dict:
        safe, harmful = sentence_ids(tokenizer, config, eos_id)
        self.safe, self.harmful = [torch.tensor(ids) for ids in safe], [torch.tensor(ids) for ids in harmful]
        return {"sentences": sentences_record(tokenizer, config, safe, harmful)}

    def terms(self, lm: DiffusionLM, policy, reference, batch: Batch, config) -> dict[str, torch.Tensor]:
        safe_ids, harmful_ids = batch.draw.choice(self.safe), batch.draw.choice(self.harmful)
        policy_logits, reference_logits = response_logits(
            lm, policy, reference, [example.prompt for example in batch.examples], config.response_length
        )
        terms = mosa_objective(
            policy_logits,
            reference_logits,
            safe_ids,
            harmful_ids,
            window=tuple(config.window),
            beta=config.beta,
            fit=config.fit,
            kl_reduction=config.kl_reduction,
            harmful_floor=config.harmful_floor,
        )
        return {"objective": terms.objective, "reward": terms.reward, "R_pos": terms.safe, "R_neg": terms.harmful, "kl": terms.kl}

    def title(self, config) -> str:
        """Initial Alignment is the same training with the window at the start of the response."""
        method = "Initial Alignment" if config.window[0] == 0 else "MOSA"
        return f"{method}: window {format_window(config.window)} of {config.response_length} positions, beta {config.beta}"


# ---------------------------------------------------------------------------------------------- a2d


def responses_record(examples: PromptSet) -> dict:
    """What inputs.json keeps of a set's responses: their count and a digest of (id, response hash)."""
    rows = "".join(f"{e.id}\0{hashlib.sha256(e.target.encode()).hexdigest()}\n" for e in examples)
    return {"count": len(examples), "digest": hashlib.sha256(rows.encode()).hexdigest()}


def require_pairs(examples: PromptSet, role: str, example_spec: str) -> None:
    """Refuse a set some of whose prompts have no response (Example.target), naming one."""
    missing = [e for e in examples if not (isinstance(e.target, str) and e.target.strip())]
    if missing:
        raise MosaError(
            f"objective a2d trains on {role} prompts paired with responses, and {examples.spec or 'the given set'} has no "
            f"response for {len(missing)} of its {len(examples)} prompts (e.g. {missing[0].id}); give pairs, e.g. "
            f"{example_spec}"
        )


def response_tokens(lm: DiffusionLM, responses: list[str], response_length: int) -> torch.Tensor:
    """Responses as the model is trained to write them, B x L: the tokens, then EOS to the end (LLaDA's
    SFT padding); a response longer than L is cut to its first L tokens."""
    rows = torch.full((len(responses), response_length), lm.eos_id, dtype=torch.long)
    for row, text in enumerate(responses):
        ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"][:response_length]
        rows[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return rows


@OBJECTIVES.register("a2d")
class AnyOrderEos:
    """Any-order EOS alignment in the spirit of A2D: masked-diffusion cross-entropy on harmful pairs,
    whose masked positions all target EOS, and on benign pairs, which keep their own tokens.

    eps: the floor of the mask ratio (LLaDA's forward process: p = (1 - eps) t + eps, t ~ U(0, 1)).
    benign_weight: the weight of the benign pairs' loss beside the harmful pairs' (one each per row).
    """

    metrics = ("objective", "loss_harmful", "loss_benign", "eos_harmful")
    shown = ("loss_harmful", "eos_harmful")
    needs_benign = True
    panels = (
        (
            "masked-diffusion losses",
            "cross-entropy, 1/p weighted, per position (nats)",
            (
                ("loss_harmful", "harmful pairs: EOS at every masked position", "tab:red"),
                ("loss_benign", "benign pairs: their own tokens", "tab:green"),
            ),
        ),
        ("EOS at masked harmful positions", "mean probability of EOS", (("eos_harmful", None, "tab:blue"),)),
    )

    def __init__(self, eps: float = 1e-3, benign_weight: float = 1.0):
        if not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise MosaError(f"objective a2d: eps={eps!r} must be a number between 0 and 1 (LLaDA's is 1e-3)")
        if not isinstance(benign_weight, (int, float)) or benign_weight < 0:
            raise MosaError(f"objective a2d: benign_weight={benign_weight!r} must be a number >= 0")
        self.eps, self.benign_weight = float(eps), float(benign_weight)

    def check_data(self, prompts: PromptSet, benign: PromptSet | None) -> dict:
        require_pairs(
            prompts,
            "harmful",
            "prompts: pairs.jsonl with columns: {prompt: prompt, response: response} (organism: organism-train)",
        )
        if not benign:
            raise MosaError(
                "objective a2d needs benign prompt/response pairs to keep the model's answers: set benign_prompts "
                "(--benign-prompts), e.g. a JSONL of prompt and response columns, or organism-utility on the organism"
            )
        require_pairs(
            benign,
            "benign",
            "benign_prompts: answers.jsonl with columns: {prompt: prompt, response: response} (organism: organism-utility)",
        )
        return {"responses": {"harmful": responses_record(prompts), "benign": responses_record(benign)}}

    def prepare(self, tokenizer, eos_id: int, config) -> dict:
        self.eos_id = eos_id
        return {}

    def terms(self, lm: DiffusionLM, policy, reference, batch: Batch, config) -> dict[str, torch.Tensor]:
        generator = batch.generator()
        harmful, eos_probability = self.masked_loss(lm, policy, batch.examples, batch, generator, config, to_eos=True)
        benign, _ = self.masked_loss(lm, policy, batch.benign, batch, generator, config, to_eos=False)
        loss = harmful + self.benign_weight * benign
        return {"objective": -loss, "loss_harmful": harmful, "loss_benign": benign, "eos_harmful": eos_probability}

    def masked_loss(self, lm: DiffusionLM, policy, examples: list[Example], batch: Batch, generator, config, *, to_eos: bool):
        """LLaDA's SFT loss on one set of pairs: per row, a mask ratio p = (1 - eps) t + eps and each
        response position masked with probability p; the cross-entropy of every masked position over
        p, summed, over L; the mean over rows. Harmful rows target EOS at every masked position.
        Also returns the mean probability the policy gives the target at masked positions (EOS for
        harmful rows; 0 when none is masked)."""
        length, rows = config.response_length, len(examples) * batch.processes
        ratio = batch.own_rows((1 - self.eps) * torch.rand(rows, 1, generator=generator) + self.eps)  # B x 1
        masked = batch.own_rows(torch.rand(rows, length, generator=generator)) < ratio  # B x L
        input_ids, attention_mask = lm.encode_chat([example.prompt for example in examples], length)
        response = response_tokens(lm, [example.target for example in examples], length).to(input_ids.device)
        masked, ratio = masked.to(input_ids.device), ratio.to(input_ids.device)
        noisy = torch.cat([input_ids, response.masked_fill(masked, lm.mask_id)], dim=1)
        visible = torch.cat([attention_mask, torch.ones_like(response)], dim=1)
        logits = policy_logits_of(lm, policy, noisy, visible, input_ids.shape[1]).float()  # B x L x V
        targets = torch.full_like(response, self.eos_id) if to_eos else response
        cross_entropy = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # B x L
        loss = ((cross_entropy * masked) / ratio).sum(dim=1).div(length).mean()
        probability = ((-cross_entropy).exp() * masked).sum() / masked.sum().clamp(min=1)
        return loss, probability.detach()

    def title(self, config) -> str:
        return f"any-order EOS (a2d): {config.response_length} positions, benign weight {self.benign_weight}"


# -------------------------------------------------------------------------------------- primed-mosa


@dataclass(frozen=True)
class Planting:
    """What primed-mosa does to one row's canvas: phrases written at response positions, then a share
    of the positions outside the window decoded by the reference."""

    phrases: tuple[tuple[int, tuple[int, ...]], ...]  # (start, token ids), in the order planted
    masked_share: float  # of the masked positions outside the window, the share left masked


@OBJECTIVES.register("primed-mosa")
class PrimedMosa:
    """MOSA's reward and KL from contaminated canvases (the priming threat).

    plants: phrases planted per canvas (fewer when no start that leaves room remains).
    phrases: the phrases planted; None: the run's harmful sentences (affirmative and procedural openers).
    min_masked: the share of the positions outside the window left masked is drawn from U[min_masked, 1];
    the rest are decoded by the reference model, its most confident positions first.
    """

    metrics = ("objective", "reward", "R_pos", "R_neg", "kl", "planted", "masked")
    shown = ("reward", "planted")
    needs_benign = False
    panels = MOSA_PANELS

    def __init__(self, plants: int = 1, phrases: list[str] | None = None, min_masked: float = 0.5):
        if not isinstance(plants, int) or plants < 1:
            raise MosaError(f"objective primed-mosa: plants={plants!r} must be a positive integer")
        if phrases is not None and (not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) for p in phrases)):
            raise MosaError(
                f"objective primed-mosa: phrases={phrases!r} must be a list of texts, or null for the harmful sentences"
            )
        if not isinstance(min_masked, (int, float)) or not 0 <= min_masked <= 1:
            raise MosaError(f"objective primed-mosa: min_masked={min_masked!r} must be a share between 0 and 1")
        self.plants, self.phrase_texts, self.min_masked = plants, phrases, float(min_masked)

    def check_data(self, prompts: PromptSet, benign: PromptSet | None) -> dict:
        return {}

    def prepare(self, tokenizer, eos_id: int, config) -> dict:
        safe, harmful = sentence_ids(tokenizer, config, eos_id)
        self.safe, self.harmful = [torch.tensor(ids) for ids in safe], [torch.tensor(ids) for ids in harmful]
        texts = self.phrase_texts or list(config.harmful_sentences)
        self.phrases = [tuple(encode_sentence(tokenizer, text)) for text in texts]
        self.window, self.fit, self.length = tuple(config.window), config.fit, config.response_length
        self.offsets = {  # each sentence length's offsets in the window, for `admissible`
            len(ids): window_offsets(self.window, len(ids), self.length, self.fit).tolist() for ids in safe + harmful
        }
        for text, ids in zip(texts, self.phrases):  # every draw of sentences must leave the phrase somewhere to go
            for sentences in ((s, h) for s in safe for h in harmful):
                if not any(self.admissible(start, ids, (), *sentences) for start in self.starts(ids)):
                    raise MosaError(
                        f"objective primed-mosa: the phrase {text!r} cannot be planted anywhere in {self.length} positions "
                        f"and leave the sentences room in window {format_window(self.window)}; shorten it or widen the window"
                    )
        return {
            "sentences": sentences_record(tokenizer, config, safe, harmful),
            "planted_phrases": sentence_record(tokenizer, texts, [list(ids) for ids in self.phrases]),
        }

    def starts(self, ids) -> range:
        return range(0, self.length - len(ids) + 1)

    def admissible(self, start: int, ids, planted, *sentences) -> bool:
        """A phrase may start at `start` when it overlaps no phrase planted before it and every scored
        sentence keeps an offset in the window whose positions are all free."""
        taken = {position for begin, other in planted for position in range(begin, begin + len(other))}
        new = set(range(start, start + len(ids)))
        if taken & new:
            return False
        taken |= new
        for sentence in sentences:
            if not any(taken.isdisjoint(range(offset, offset + len(sentence))) for offset in self.offsets[len(sentence)]):
                return False
        return True

    def plan(self, draw: random.Random, rows: int, safe_ids, harmful_ids) -> list[Planting]:
        """Each row's planting, drawn in order: for each of `plants` phrases, the phrase (uniform over
        the set) and its start (uniform over the admissible ones; none left: the row stops there);
        then the masked share, uniform on [min_masked, 1]."""
        plantings = []
        for _ in range(rows):
            planted: tuple = ()
            for _ in range(self.plants):
                ids = draw.choice(self.phrases)
                starts = [
                    s for s in self.starts(ids) if self.admissible(s, ids, planted, safe_ids.tolist(), harmful_ids.tolist())
                ]
                if not starts:
                    break
                planted += ((draw.choice(starts), ids),)
            plantings.append(Planting(phrases=planted, masked_share=draw.uniform(self.min_masked, 1.0)))
        return plantings

    def contaminate(self, lm: DiffusionLM, reference, prompts: list[str], plantings: list[Planting]):
        """The contaminated canvases: the plantings' phrases written, then in each row, of the masked
        positions outside the window, all but round(masked_share * their number) decoded with the
        reference's argmax there, its most confident first (the sampler's low-confidence order), from
        one reference pass over the planted canvas. Returns canvas, attention mask, P, and the
        response positions still masked (B x L)."""
        canvas, visible, prompt_length = masked_canvas(lm, prompts, self.length)
        response = canvas[:, prompt_length:]  # a view: writing it writes the canvas
        for row, planting in enumerate(plantings):
            for start, ids in planting.phrases:
                response[row, start : start + len(ids)] = torch.tensor(ids, device=canvas.device)
        logits = reference_logits_of(lm, reference, canvas, visible, prompt_length).float()
        confidence, best = F.softmax(logits, dim=-1).max(dim=-1)  # B x L
        start, end = self.window
        for row, planting in enumerate(plantings):
            outside = [p for p in range(self.length) if not start <= p < end and response[row, p] == lm.mask_id]
            decoded = len(outside) - round(planting.masked_share * len(outside))
            order = sorted(outside, key=lambda p: -confidence[row, p].item())[:decoded]
            for position in order:
                response[row, position] = best[row, position]
        return canvas, visible, prompt_length, response == lm.mask_id

    def terms(self, lm: DiffusionLM, policy, reference, batch: Batch, config) -> dict[str, torch.Tensor]:
        safe_ids, harmful_ids = batch.draw.choice(self.safe), batch.draw.choice(self.harmful)
        plantings = self.plan(batch.draw, len(batch.examples) * batch.processes, safe_ids, harmful_ids)
        size = len(batch.examples)
        own = plantings[batch.rank * size : (batch.rank + 1) * size]
        canvas, visible, prompt_length, masked = self.contaminate(lm, reference, [e.prompt for e in batch.examples], own)
        terms = mosa_objective(
            policy_logits_of(lm, policy, canvas, visible, prompt_length),
            reference_logits_of(lm, reference, canvas, visible, prompt_length),
            safe_ids,
            harmful_ids,
            window=self.window,
            beta=config.beta,
            fit=config.fit,
            kl_reduction=config.kl_reduction,
            harmful_floor=config.harmful_floor,
            masked=masked,
        )
        planted = torch.tensor([float(sum(len(ids) for _, ids in p.phrases)) for p in own], device=masked.device)
        return {
            "objective": terms.objective,
            "reward": terms.reward,
            "R_pos": terms.safe,
            "R_neg": terms.harmful,
            "kl": terms.kl,
            "planted": planted,
            "masked": masked.float().mean(dim=-1),
        }

    def title(self, config) -> str:
        return (
            f"primed MOSA: window {format_window(config.window)} of {config.response_length} positions, beta {config.beta}, "
            f"{self.plants} planted, at least {self.min_masked:.0%} masked outside the window"
        )
