"""The sampling engine behind `mosa serve`: one thread that samples batches of requests, one canvas
batch at a time.

Requests wait in a queue. When the thread is free it takes the oldest request and every other waiting
one that can share its canvas batch, up to `max_batch_size`: the same sampler settings (canvas
length, steps, blocks, temperature, seed, remasking, ..., and the defences, which the web app writes
with every option in force so that equal defences match however a request spelt them), and, for models whose positions count
from the left edge of the canvas, the same prompt length. That second rule is what keeps a request's
answer independent of its batch:

- the exact sampler gives a row the same tokens whatever else is in its batch when the model ignores
  left padding: mosa's bidirectional Llama (the organism, the tests' models) and Dream number
  positions from each row's first real token, and each row's noise is keyed by its own seed, prompt
  id and prompt (mosa.sampling.noise);
- LLaDA and MMaDA (native or remote code) number positions from the canvas's left edge, as their
  reference code does, so left padding shifts a row's positions and can change its rounding
  (docs/sampler.md). Those rows are batched only with prompts of their own length, which need no
  padding.

While a batch samples, the sampler reports each step (`generate(on_step=...)`): streamed requests
get their committed prefix as it grows, and a batch whose clients have all gone stops at the next
step. Events reach the web server's event loop through `Job.send`, which is thread-safe.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mosa.models import DiffusionLM, DreamLM
from mosa.models.wrappers import BidirectionalLM
from mosa.sampling import SamplerConfig, generate


@dataclass
class Job:
    """One response to sample: one choice of one request."""

    config: SamplerConfig
    prompt: list[int]  # the rendered prompt's token ids
    prefill: dict[int, list[int]]  # response position -> token ids
    noise_id: str  # keys the row's noise with the prompt (mosa.sampling.noise)
    stream: bool
    # ("prefix", ids) while streaming; ("done", ids, commit_step, defence_events); ("error", exception)
    send: Callable[[tuple], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    sent_prefix: int = 0  # response positions already reported as committed


class AllClientsGone(Exception):
    """Raised from the sampler's step hook to stop a batch nobody waits for any more."""


def pads_exactly(lm: DiffusionLM) -> bool:
    """Whether left padding leaves a row's positions, and so its answer, unchanged."""
    module = lm.module
    return isinstance(module, DreamLM) or (isinstance(module, BidirectionalLM) and module.positions == "from_mask")


class Engine:
    def __init__(self, lm: DiffusionLM, *, max_batch_size: int = 16, batch_wait: float = 0.005):
        self.lm, self.max_batch_size, self.batch_wait = lm, max_batch_size, batch_wait
        self.pads_exactly = pads_exactly(lm)
        # batches sampled, the largest, and those stopped because every client had gone (tests, benchmark)
        self.batches = self.largest_batch = self.abandoned = 0
        self._waiting: list[Job] = []
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mosa-serve-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            for job in self._waiting:
                job.send(("error", RuntimeError("the server is shutting down")))
            self._waiting.clear()
            self._changed.notify_all()
        self._thread.join(timeout=60)

    def submit(self, jobs: list[Job]) -> None:
        with self._changed:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            self._waiting.extend(jobs)
            self._changed.notify_all()

    def batch_key(self, job: Job) -> tuple:
        return (dataclasses.astuple(job.config), None if self.pads_exactly else len(job.prompt))

    def _next_batch(self) -> list[Job] | None:
        with self._changed:
            while not self._waiting and not self._closed:
                self._changed.wait()
            if self._closed:
                return None
        # Requests sent together arrive a little apart: a few milliseconds lets them share the batch.
        time.sleep(self.batch_wait)
        with self._changed:
            self._waiting = [job for job in self._waiting if not job.cancelled.is_set()]
            if not self._waiting:
                return []
            key = self.batch_key(self._waiting[0])
            batch = [job for job in self._waiting if self.batch_key(job) == key][: self.max_batch_size]
            chosen = set(map(id, batch))
            self._waiting = [job for job in self._waiting if id(job) not in chosen]
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch:
                self._sample(batch)

    def _sample(self, batch: list[Job]) -> None:
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        lm, config = self.lm, batch[0].config
        width = max(len(job.prompt) for job in batch)
        input_ids = torch.full((len(batch), width), lm.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, job in enumerate(batch):
            input_ids[row, width - len(job.prompt) :] = torch.tensor(job.prompt, dtype=torch.long)
            attention_mask[row, width - len(job.prompt) :] = 1
        streaming = [row for row, job in enumerate(batch) if job.stream]

        def on_step(step: int, canvas: torch.Tensor) -> None:
            if all(job.cancelled.is_set() for job in batch):
                raise AllClientsGone
            if not streaming:
                return
            response = canvas[streaming, width:]
            masked = response == config.mask_id
            # the committed prefix: up to the first mask (the whole response when none is left)
            lengths = torch.where(masked.any(dim=1), masked.int().argmax(dim=1), response.shape[1]).tolist()
            for row, length, ids in zip(streaming, lengths, response.tolist()):
                job = batch[row]
                if length > job.sent_prefix and not job.cancelled.is_set():
                    job.sent_prefix = length
                    job.send(("prefix", ids[:length]))

        try:
            output = generate(
                lm.module,
                input_ids.to(lm.device),
                attention_mask.to(lm.device),
                config=config,
                prefill=[job.prefill for job in batch],
                prompt_ids=[job.noise_id for job in batch],
                on_step=on_step,
            )
        except AllClientsGone:
            self.abandoned += 1
            return
        except Exception as error:  # one batch's failure is its requests' error; the server goes on
            for job in batch:
                job.send(("error", error))
            return
        for job, response, steps, events in zip(
            batch, output.response.tolist(), output.commit_step.tolist(), output.defence_events
        ):
            job.send(("done", response, steps, events))
