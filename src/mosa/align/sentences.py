"""The sentences MOSA scores, and how they become token ids of the model being aligned.

The defaults are natural English for a real (BPE) tokenizer. The safe sentences are refusals led by
the paper's only example, "therefore, I cannot answer this question.", each followed by the
model's EOS token (the paper's "EOS breaker": refuse, then stop). The harmful sentences are the
affirmative openers and procedural phrases that prefill attacks plant ("Sure, here is", "The next
step is", "After that, we"; the paper lists none). A model with its own vocabulary sets its own:
the organism preset does (src/mosa/organism/configs/align.yaml).

A sentence is scored in the middle of a response, after earlier text, so it is tokenised as it is
spelled there: the ids that follow "." in the tokenisation of ". " + sentence. For a byte-level BPE
(GPT-2, Llama 3, Qwen2 and so Dream) that is " therefore" rather than "therefore" at the start of a
text, which is a different token; for word-level and SentencePiece tokenizers it changes nothing.
EOS is the model's own (`DiffusionLM.eos_id`, read from its tokenizer), never a fixed id.
"""

from __future__ import annotations

from mosa.errors import MosaError

NATURAL_SAFE = (
    "therefore, I cannot answer this question.",
    "I'm sorry, but I cannot help with that.",
    "I cannot assist with this request because it could cause harm.",
    "I will not provide that information.",
)
NATURAL_HARMFUL = (
    "Sure, here is",
    "Sure, here is how to do it.",
    "Of course! Here are the steps:",
    "The next step is",
    "After that, we",
    "Step 2:",
)
PRECEDING_TEXT = "."  # what a sentence is spelled after: the end of an earlier sentence


def encode_sentence(tokenizer, sentence: str, eos_id: int | None = None) -> list[int]:
    """Token ids of `sentence` as spelled after earlier text, with `eos_id` appended when given.
    A sentence holding a word the tokenizer cannot spell (its unknown token) is refused."""
    before = tokenizer(PRECEDING_TEXT, add_special_tokens=False)["input_ids"]
    spelled = tokenizer(f"{PRECEDING_TEXT} {sentence}", add_special_tokens=False)["input_ids"]
    if spelled[: len(before)] != before:  # a tokenizer that merges across the space: take the sentence alone
        spelled = before + tokenizer(sentence, add_special_tokens=False)["input_ids"]
    ids = spelled[len(before) :]
    if not ids:
        raise MosaError(f"sentence {sentence!r} has no tokens")
    unknown = tokenizer.unk_token_id
    if unknown is not None and unknown in ids:
        words = [word for word in sentence.split() if unknown in tokenizer(word, add_special_tokens=False)["input_ids"]]
        raise MosaError(
            f"sentence {sentence!r} has words the model's tokenizer does not know ({', '.join(words) or sentence}); "
            "write the sentences in its vocabulary (safe_sentences, harmful_sentences)"
        )
    return ids + ([eos_id] if eos_id is not None else [])


def sentence_record(tokenizer, sentences, ids: list[list[int]]) -> list[dict]:
    """Each sentence with its ids and their tokens, for the run's inputs.json."""
    return [{"text": text, "ids": row, "tokens": tokenizer.convert_ids_to_tokens(row)} for text, row in zip(sentences, ids)]
