"""From a response canvas to what an OpenAI client reads: the text, its finish reason, its token
count, and, while streaming, the text that may be sent so far.

The canvas holds `gen_length` positions. The answer is its first `max_tokens` of them (all when no
cap is given), decoded as mosa's records decode a response (special tokens dropped, every other
token kept: words written after an early EOS stay visible, as the judges see them), then cut before
the first stop sequence. The finish reason is "stop" when a stop sequence cut it or the answer holds
an end token (the model ended its answer inside the canvas), else "length" (the answer filled the
canvas, or reached max_tokens, without ending).

Streaming sends the committed prefix of the canvas: the response positions up to the first one still
masked. A dLLM commits out of order, so a token committed far ahead waits until everything before it
is fixed. Text that could be the start of a stop sequence, or half of a multi-byte character, is held
back until the next tokens settle it; the streamed pieces add up to the plain answer's text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str  # "stop" | "length"
    completion_tokens: int


class AnswerText:
    """How one request's answers are read: its tokenizer, end tokens, cap and stop sequences."""

    def __init__(self, tokenizer, *, end_ids: set[int], special_ids: set[int], max_tokens: int | None, stop: list[str]):
        self.tokenizer, self.end_ids, self.special_ids = tokenizer, end_ids, special_ids
        self.max_tokens, self.stop = max_tokens, stop

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def capped(self, ids: list[int]) -> list[int]:
        return ids if self.max_tokens is None else ids[: self.max_tokens]

    def first_stop(self, text: str) -> int | None:
        """Where the earliest stop sequence starts in `text`, or None."""
        found = [index for index in (text.find(stop) for stop in self.stop) if index >= 0]
        return min(found) if found else None

    def answer(self, response_ids: list[int]) -> Answer:
        ids = self.capped(response_ids)
        text = self.decode(ids)
        cut = self.first_stop(text)
        if cut is not None:
            return Answer(text[:cut], "stop", self._tokens_before(ids, cut))
        ended = any(token in self.end_ids for token in ids)
        return Answer(text, "stop" if ended else "length", sum(token not in self.special_ids for token in ids))

    def _tokens_before(self, ids: list[int], length: int) -> int:
        """The text tokens of the shortest prefix of `ids` whose text reaches past `length` characters
        (the tokens that made the answer before its stop sequence)."""
        for end in range(len(ids) + 1):
            if len(self.decode(ids[:end])) > length:
                return sum(token not in self.special_ids for token in ids[: end - 1])
        return sum(token not in self.special_ids for token in ids)

    def settled(self, prefix_ids: list[int]) -> tuple[str, bool]:
        """The text of a committed prefix that may be streamed now, and whether a stop sequence has
        already ended the answer."""
        text = self.decode(self.capped(prefix_ids))
        cut = self.first_stop(text)
        if cut is not None:
            return text[:cut], True
        held = max((size for stop in self.stop for size in range(1, len(stop)) if text.endswith(stop[:size])), default=0)
        text = text[: len(text) - held]
        return text.rstrip("\ufffd"), False  # U+FFFD: a multi-byte character whose bytes are not all committed yet


class StreamedText:
    """The text one streamed answer has sent so far; `advance` returns what to send next."""

    def __init__(self, reader: AnswerText):
        self.reader, self.sent, self.stopped = reader, "", False

    def advance(self, prefix_ids: list[int]) -> str:
        if self.stopped:
            return ""
        text, self.stopped = self.reader.settled(prefix_ids)
        return self._extend(text)

    def finish(self, answer: Answer) -> str:
        """The rest of the final answer, once the canvas is complete."""
        delta = "" if self.stopped else self._extend(answer.text)
        self.stopped = True
        return delta

    def _extend(self, text: str) -> str:
        # A decoder may tidy a longer prefix differently (spaces before punctuation); text that does
        # not extend what was sent waits for the next prefix, or for the final answer.
        if not text.startswith(self.sent):
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta
