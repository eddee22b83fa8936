"""What an attack produces: test cases for a dLLM target, and the target that answers them.

An attack turns harmful behaviours into `TestCase`s: the conversation to render (any message list),
text to prefill at chosen response positions, text to write over the canvas at chosen denoising
steps, and text banned from starting at chosen response positions. Single-shot attacks build cases
from the behaviour alone; white-box and multi-query attacks (GCG, TAP, ...) query the `Target` while
they build them: for responses, and for the log-probabilities of a given response three ways.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mosa.data import Example
from mosa.errors import MosaError
from mosa.judges.base import is_empty
from mosa.judges.classifier import ClassifierJudge
from mosa.models import DiffusionLM
from mosa.models.likelihood import TokenLogprobs, elbo_logprobs, masked_logprobs, teacher_forced_logprobs
from mosa.paths import write_atomically
from mosa.registry import Registry
from mosa.sampling import SamplerConfig, generate, response_order

ATTACKS: Registry = Registry("attack")


@dataclass
class TestCase:
    __test__ = False  # not a pytest class

    prompt_id: str
    behaviour: str  # the harmful request as the benchmark states it
    messages: list[dict[str, str]]  # the conversation the target sees (may hold fabricated turns)
    prefill: dict[int, str] = field(default_factory=dict)  # response position -> text, fixed from the start
    payload: dict = field(default_factory=dict)  # what the attack did, JSON-serialisable, for the record
    # denoising step -> {response position -> text}: written over the canvas just before that step
    interventions: dict[int, dict[int, str]] = field(default_factory=dict)
    # response position -> texts the response may not hold starting there (EPT's negative prefixes)
    bans: dict[int, list[str]] = field(default_factory=dict)
    # The answer to judge when the attack composed it from several of the target's answers (Speak
    # Easy's sub-answers, translated back and joined): the eval records it instead of sampling one.
    response: str | None = None


@dataclass
class TargetResponse:
    text: str
    response_ids: list[int]
    commit_step: list[int]  # per response position: the step that committed it, -1 = prefilled
    order: dict | None = None  # the decoding-order summary (mosa.sampling.response_order); None: no single sampling
    forward_passes: int | None = None  # of the batch it was sampled in (None: not known, or no sampling produced it)
    # What the sampler's defences did to this response (GenerationOutput.defence_events), {} if nothing.
    defence_events: dict = field(default_factory=dict)


class RoundStore:
    """Where a multi-round attack keeps one behaviour's state between rounds, so that a run killed
    mid-attack resumes at the last round saved instead of starting the behaviour again.

        state = target.rounds.load(behaviour.id)      # None: start afresh
        ...one round...
        target.rounds.save(behaviour.id, state)       # JSON-serialisable; written atomically

    `directory` None keeps nothing (a library call outside `mosa eval`); `mosa eval` gives each
    (benchmark, attack) a directory and removes a behaviour's file once its test cases are saved.
    A state must hold everything the next round depends on, random generators' states included,
    so that a resumed attack takes the same rounds an uninterrupted one would.
    """

    def __init__(self, directory: Path | None = None):
        self.directory = directory

    def path(self, behaviour_id: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / (hashlib.sha256(behaviour_id.encode()).hexdigest()[:24] + ".json")

    def load(self, behaviour_id: str):
        path = self.path(behaviour_id)
        if path is None or not path.is_file():
            return None
        saved = json.loads(path.read_text())
        return saved["state"] if saved.get("behaviour_id") == behaviour_id else None

    def save(self, behaviour_id: str, state) -> None:
        path = self.path(behaviour_id)
        if path is not None:
            write_atomically(path, json.dumps({"behaviour_id": behaviour_id, "state": state}, ensure_ascii=False))

    def clear(self, behaviour_id: str) -> None:
        """Forget a finished behaviour's state; the directories go once nothing is left in them."""
        path = self.path(behaviour_id)
        if path is None:
            return
        path.unlink(missing_ok=True)
        for directory in (path.parent, path.parent.parent):
            try:
                directory.rmdir()
            except OSError:  # not empty, or already gone
                break


class TargetBase(ABC):
    """What every target offers attacks, whether its model is in this process (`Target`) or behind a
    `mosa serve` endpoint (mosa.attacks.served.ServedTarget): the sampler settings it answers with,
    its batch size, its round store, and text spans checked against its tokenizer.
    A subclass gives `tokens(text)` and `respond(cases)`.
    """

    def __init__(self, sampler: SamplerConfig, batch_size: int = 16, rounds: RoundStore | None = None):
        self.sampler, self.batch_size = sampler, batch_size
        self.rounds = rounds or RoundStore()

    @abstractmethod
    def tokens(self, text: str) -> list[int]:
        """The token ids a text takes on the canvas (no BOS/EOS added)."""

    @abstractmethod
    def respond(self, cases: list[TestCase]) -> list[TargetResponse]:
        """The target's responses to `cases`, in order: text, token ids, commit steps and decoding order."""

    def prefill_ids(self, prefill: dict[int, str]) -> dict[int, list[int]]:
        """{response position: text} -> {response position: token ids} (for prefill and interventions alike)."""
        return {int(position): self.tokens(text) for position, text in prefill.items()}

    def check_spans(self, attack: str, spans: dict[int, str]) -> None:
        """Refuse, before anything is sampled, text spans that leave the response or overlap."""
        gen_length = self.sampler.gen_length
        taken: dict[int, int] = {}  # response position -> start of the span that holds it
        for position, ids in sorted(self.prefill_ids(spans).items()):
            end = position + len(ids)
            if not ids:
                raise MosaError(f"attack {attack}: the text at response position {position} is empty")
            if position < 0 or end > gen_length:
                raise MosaError(
                    f"attack {attack}: {spans[position]!r} at response position {position} spans [{position}, {end}) tokens, "
                    f"outside the response [0, {gen_length}); move it or raise the sampler's gen_length"
                )
            clash = next((taken[p] for p in range(position, end) if p in taken), None)
            if clash is not None:
                raise MosaError(
                    f"attack {attack}: {spans[position]!r} at position {position} overlaps {spans[clash]!r} at {clash}"
                )
            taken.update(dict.fromkeys(range(position, end), position))


class Target(TargetBase):
    """A dLLM and the sampler settings it is attacked with: what black-box attacks may ask of it.

    respond(cases)              responses to conversations (any message list), with prefill,
                                interventions and token bans on the canvas, and each one's decoding
                                order: up to `steps` forward passes per batch, plus one per
                                position of a ban's region
    prompt_tokens(messages)     the ids a conversation reaches the model as (chat template): no pass
    masked_logprobs             a response's per-token log-probabilities, fully masked: 1 forward pass
    teacher_forced_logprobs     left to right, with the exact top-k per position: m passes (m tokens)
    elbo_logprobs               LLaDA's Monte-Carlo ELBO: mc_num passes
    Every reading uses the canvas the target answers on, [prompt ; gen_length] (mosa.models.likelihood).

    Attacks record what they ask, per behaviour, in each case's payload (`queries`). `rounds` keeps
    multi-round attacks' state (RoundStore).
    """

    def __init__(self, lm: DiffusionLM, sampler: SamplerConfig, batch_size: int = 16, rounds: RoundStore | None = None):
        super().__init__(sampler, batch_size, rounds)
        self.lm = lm

    def tokens(self, text: str) -> list[int]:
        return self.lm.tokenizer(text, add_special_tokens=False)["input_ids"]

    def ban_ids(self, bans: dict[int, list[str]]) -> dict[int, list[list[int]]]:
        """{response position: banned texts} -> {response position: banned token sequences}. A text is
        banned as it tokenizes alone: give the variants a tokenizer makes in context (" I" after a
        space) as texts of their own."""
        return {int(position): [self.tokens(text) for text in texts] for position, texts in bans.items()}

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        """A conversation's token ids as the target is given it (chat template and assistant header),
        refused when the template cannot render it or when it leaves no room for the response."""
        return self.lm.check_prompts([messages], self.sampler.gen_length)[0]

    def masked_logprobs(self, messages: list[dict[str, str]], response: str, position: int = 0) -> TokenLogprobs:
        """Each token of `response`, placed at `position` of the response canvas, scored with the
        whole response masked (as MOSA's objective reads it). 1 forward pass."""
        return masked_logprobs(
            self.lm, self.prompt_tokens(messages), self.tokens(response), gen_length=self.sampler.gen_length, position=position
        )

    def teacher_forced_logprobs(
        self, messages: list[dict[str, str]], response: str, position: int = 0, top_k: int = 5, until_miss: bool = False
    ) -> TokenLogprobs:
        """Each token scored with the tokens before it revealed and the rest masked, with the exact
        top_k tokens at each position (PAL's black-box view). m forward passes, batch_size per call;
        until_miss: only through the first token that is not top-1 (about twice as many passes at most)."""
        return teacher_forced_logprobs(
            self.lm,
            self.prompt_tokens(messages),
            self.tokens(response),
            top_k=top_k,
            batch_size=self.batch_size,
            gen_length=self.sampler.gen_length,
            position=position,
            until_miss=until_miss,
        )

    def elbo_logprobs(
        self, messages: list[dict[str, str]], response: str, position: int = 0, mc_num: int = 128, seed: int = 0
    ) -> TokenLogprobs:
        """LLaDA's Monte-Carlo ELBO of `response`, as each token's share. mc_num forward passes."""
        return elbo_logprobs(
            self.lm,
            self.prompt_tokens(messages),
            self.tokens(response),
            mc_num=mc_num,
            seed=seed,
            batch_size=self.batch_size,
            gen_length=self.sampler.gen_length,
            position=position,
        )

    def respond(self, cases: list[TestCase]) -> list[TargetResponse]:
        responses = []
        for start in range(0, len(cases), self.batch_size):
            batch = cases[start : start + self.batch_size]
            input_ids, attention_mask = self.lm.encode_chat([case.messages for case in batch], self.sampler.gen_length)
            prefill = [self.prefill_ids(case.prefill) for case in batch]
            interventions = [{int(step): self.prefill_ids(spans) for step, spans in case.interventions.items()} for case in batch]
            bans = [self.ban_ids(case.bans) for case in batch]
            # A case's noise (at temperature > 0) follows its prompt id and text, so its response does not depend on its batch.
            output = generate(
                self.lm.module,
                input_ids,
                attention_mask,
                config=self.sampler,
                prefill=prefill,
                interventions=interventions,
                bans=bans,
                prompt_ids=[case.prompt_id for case in batch],
            )
            for row in range(len(batch)):
                ids, steps = output.response[row].tolist(), output.commit_step[row].tolist()
                written = {
                    position + offset
                    for spans in interventions[row].values()
                    for position, span in spans.items()
                    for offset in range(len(span))
                }
                order = response_order(
                    ids, steps, written=written, end_ids={self.lm.eos_id, self.lm.eot_id, self.lm.pad_id}, mask_id=self.lm.mask_id
                )
                responses.append(
                    TargetResponse(
                        self.lm.decode_response(output.response[row]),
                        ids,
                        steps,
                        order,
                        output.forward_passes,
                        output.defence_events[row],
                    )
                )
        return responses

    def window_text(self, response: TargetResponse, window: tuple[int, int]) -> str:
        """The text of a response's tokens at response positions [start, end) (special tokens dropped):
        what a middle-targeted attack (the paper's Table 4, tokens 20-60) scores."""
        start, end = window
        return self.lm.tokenizer.decode(response.response_ids[start:end], skip_special_tokens=True).strip()


class Attack(Protocol):
    """What the registry holds: a class built from its options, that turns behaviours into cases.

    An attack that needs more of the target than a served endpoint offers (responses to
    conversations with prefill, and the tokenizer) says why in `needs_model_in_process`, e.g.
    "it reads log-probabilities"; mosa eval then refuses it against a served model before any work.
    An attack that writes text at response positions its options name refuses, in
    `check_response_length(gen_length)`, a position beyond the response: mosa eval asks before any
    model loads (how many tokens each text takes is checked as the cases are made, with the tokenizer).
    """

    def cases(self, behaviours: list[Example], target: Target) -> list[TestCase]: ...


def verdict_score(verdict) -> float | None:
    """A scorer's verdict as the number attempts are ranked by: its score (a rubric's scale), else 1
    or 0 from its decision (keyword judges); None when it is undecided (EMPTY, UNPARSEABLE, ERROR)."""
    if verdict.harmful is None:
        return None
    if verdict.score is not None:
        return float(verdict.score)
    return 1.0 if verdict.harmful else 0.0


def rank(verdict) -> float:
    """verdict_score for sorting: an undecided verdict ranks below every score (-inf)."""
    score = verdict_score(verdict)
    return float("-inf") if score is None else score


def finite(rank_value: float) -> float | None:
    """A rank as JSON can hold it: None for -inf (undecided)."""
    return None if rank_value == float("-inf") else rank_value


def model_queries(judge, responses: list[str]) -> int:
    """The queries a judge made to rate `responses`: one per non-empty response for a judge that runs
    a model (a rubric judge's backend, the classifier judge's classifier); none for one that reads the
    text itself (keyword lists), nor for an empty response, which judges call EMPTY without asking."""
    runs_a_model = getattr(judge, "backend", None) is not None or isinstance(judge, ClassifierJudge)
    return sum(not is_empty(response) for response in responses) if runs_a_model else 0


def make_attack(name: str, options: dict | None = None) -> Attack:
    """Build a registered attack from its options as YAML gives them; unknown or missing options are
    refused. An attack's only required options are its auxiliary models, so a missing one is named
    with the forms a model spec takes."""
    example = "a model spec such as openai:MODEL@URL, transformers:PATH or smollm2 (docs/judges.md, Backends)"
    return ATTACKS.build(name, dict(options or {}), example=example)


def user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def case_id(behaviour: Example, variant: str | None) -> str:
    """A case's prompt id: the behaviour's id, suffixed "@variant" when an option sweeps several values."""
    return behaviour.id if variant is None else f"{behaviour.id}@{variant}"


# What a compliant answer opens with when the benchmark gives no target string of its own.
DEFAULT_AFFIRMATION = "Sure, here is how to do it."


def affirmation(behaviour: Example, text: str | None) -> str:
    """The affirmative text an attack aims for: the one given, else the benchmark's own target string
    for this behaviour (AdvBench's CSV ships one per goal: "Sure, here is ..."), else a generic one."""
    return text if text is not None else behaviour.target or DEFAULT_AFFIRMATION
