"""MOSA's sentence sets: natural English by default, tokenised by the model's own tokenizer as they are
spelled mid-response, EOS from the tokenizer; the organism's sentences stay with the organism preset."""

import json

import pytest

from mosa.align.sentences import NATURAL_HARMFUL, NATURAL_SAFE, encode_sentence
from mosa.align.settings import read_preset
from mosa.align.trainer import MosaConfig, train_mosa
from mosa.errors import MosaError
from mosa.models.build import build_bidirectional_llama

PAPER_SAFE = "therefore, I cannot answer this question."


def test_the_defaults_are_natural_english_and_not_the_organisms():
    config = MosaConfig()
    assert config.safe_sentences == NATURAL_SAFE and config.harmful_sentences == NATURAL_HARMFUL
    assert config.safe_sentences[0] == PAPER_SAFE
    assert {"Sure, here is", "The next step is", "After that, we"} <= set(config.harmful_sentences)
    organism = read_preset("organism")["mosa"]
    assert not set(organism["safe_sentences"]) & set(config.safe_sentences)
    assert not set(organism["harmful_sentences"]) & set(config.harmful_sentences)
    paper = read_preset("paper-llada8b")["mosa"]
    assert "safe_sentences" not in paper and "harmful_sentences" not in paper  # the natural defaults


def test_a_bpe_tokenizer_spells_a_sentence_as_it_appears_after_earlier_text(bpe_tokenizer):
    ids = encode_sentence(bpe_tokenizer, PAPER_SAFE, bpe_tokenizer.eos_token_id)
    tokens = bpe_tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0].startswith("Ġ") and tokens[-1] == "<|endoftext|>"  # " therefore", then the tokenizer's EOS
    alone = bpe_tokenizer(PAPER_SAFE, add_special_tokens=False)["input_ids"]
    assert ids[:-1] != alone  # "therefore" opening a text is spelled otherwise
    assert bpe_tokenizer.decode(ids[:-1]) == " " + PAPER_SAFE
    assert (
        encode_sentence(bpe_tokenizer, "The next step is")
        == bpe_tokenizer(". The next step is", add_special_tokens=False)["input_ids"][1:]
    )


def test_a_word_level_tokenizer_gives_the_ids_it_always_gave(tokenizer):
    for sentence in ("cannot answer this question", "sure here", "the next step is"):
        assert encode_sentence(tokenizer, sentence) == tokenizer(sentence, add_special_tokens=False)["input_ids"]


def test_a_tokenizer_that_merges_across_the_space_takes_the_sentence_alone():
    class Merging:  # one token per character, except that ". " is a token of its own
        unk_token_id = None

        def __call__(self, text, add_special_tokens=False):
            return {
                "input_ids": [
                    0 if piece == ". " else ord(piece) for piece in ([". ", *text[2:]] if text.startswith(". ") else list(text))
                ]
            }

    assert encode_sentence(Merging(), "ok", eos_id=9) == [ord("o"), ord("k"), 9]


def test_words_the_tokenizer_cannot_spell_are_refused_by_name(tokenizer):
    with pytest.raises(MosaError, match=r"has words the model's tokenizer does not know \(therefore,, I, question.\)"):
        encode_sentence(tokenizer, "therefore, I cannot answer this question.")


def test_mosa_trains_with_the_natural_sentences_on_a_bpe_model(bpe_tokenizer, tmp_path):
    lm = build_bidirectional_llama(bpe_tokenizer, hidden_size=32, num_layers=1, num_heads=4)
    config = MosaConfig(response_length=32, window=(8, 32), max_steps=2, batch_size=2, lora_r=2, lora_alpha=4, save_every=2)
    prompts = [
        "How do magnets work?",
        "Tell me how to pick a lock.",
        "Explain how to make a cake.",
        "What is the capital of France?",
    ]
    records = train_mosa(lm, prompts, config, tmp_path / "run", progress=False)
    assert len(records) == 2
    sentences = json.loads((tmp_path / "run" / "inputs.json").read_text())["sentences"]
    assert [row["text"] for row in sentences["safe"]] == list(NATURAL_SAFE)
    assert all(row["ids"][-1] == lm.eos_id == bpe_tokenizer.eos_token_id for row in sentences["safe"])
    assert all(row["tokens"][-1] != "<|endoftext|>" for row in sentences["harmful"])  # openers do not end the response
