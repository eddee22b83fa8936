"""LLaDA's objectives against values computed by hand, and a few SFT steps on a tiny model."""

import math

import pytest
import torch

from mosa.organism.losses import pretraining_loss, sample_masking, sft_loss
from mosa.organism.train import SFTConfig, SFTExample, encode_examples, sft_train
from tests.conftest import tiny_llama

# Two sequences of three tokens over a vocabulary of two. Logits chosen so every CE is a known number.
LOGITS = torch.tensor(
    [
        [[0.0, 0.0], [math.log(3), 0.0], [0.0, 0.0]],  # row 0: p = 1/2, 3/4, 1/2 for token 0
        [[0.0, math.log(3)], [0.0, 0.0], [0.0, 0.0]],  # row 1: p(token 1) = 3/4 at position 0
    ]
)
TARGETS = torch.tensor([[0, 0, 1], [1, 0, 0]])
MASKED = torch.tensor([[True, True, False], [True, False, True]])
P_MASK = torch.tensor([[0.5], [0.25]])


def test_pretraining_loss_by_hand():
    # row 0: (ln 2 + ln 4/3) / 0.5 ; row 1: (ln 4/3 + ln 2) / 0.25 ; divided by B * T = 6
    expected = ((math.log(2) + math.log(4 / 3)) / 0.5 + (math.log(4 / 3) + math.log(2)) / 0.25) / 6
    assert pretraining_loss(LOGITS, TARGETS, MASKED, P_MASK).item() == pytest.approx(expected, rel=1e-6)


def test_sft_loss_by_hand():
    answer_lengths = torch.tensor([2.0, 4.0])
    # each row: sum of CE / (p_mask * answer length), then the sum over rows / B = 2
    row0 = (math.log(2) + math.log(4 / 3)) / (0.5 * 2)
    row1 = (math.log(4 / 3) + math.log(2)) / (0.25 * 4)
    assert sft_loss(LOGITS, TARGETS, MASKED, P_MASK, answer_lengths).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_masking_respects_maskable_and_rate():
    maskable = torch.zeros((4000, 10), dtype=torch.bool)
    maskable[:, 4:] = True
    masked, p_mask = sample_masking(maskable, eps=0.1, generator=torch.Generator().manual_seed(0))
    assert not masked[:, :4].any()  # the prompt is never masked
    assert p_mask.min() >= 0.1 and p_mask.max() <= 1.0
    assert masked[:, 4:].float().mean().item() == pytest.approx(p_mask.mean().item(), abs=0.02)


def test_a_few_sft_steps_lower_the_loss_and_move_the_weights(tokenizer):
    lm = tiny_llama(tokenizer, seed=0)
    with torch.no_grad():
        for parameter in lm.module.parameters():
            if parameter.dim() > 1:
                parameter.mul_(0.1)  # back to a trainable scale
    before = [p.detach().clone() for p in lm.module.parameters()]
    pairs = [SFTExample("what is the cat", "the cat sat on the mat"), SFTExample("who ran fast", "the red dog ran fast")]
    losses = sft_train(lm, pairs, SFTConfig(steps=60, batch_size=8, lr=3e-3, gen_length=8), progress=False)
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert all(not torch.equal(a, b) for a, b in zip(before, lm.module.parameters()))


def test_given_words_are_visible_but_never_masked(tokenizer):
    lm = tiny_llama(tokenizer)
    examples = [
        SFTExample("hello", "the cat sat on the mat", given=(0, 3)),
        SFTExample("what is the dog", "ran fast"),
        SFTExample("who ran fast", "the red dog ran fast", given=(2, 4)),  # a span in the middle
    ]
    input_ids, attention_mask, maskable = encode_examples(lm, examples, gen_length=8)
    prompt_width = input_ids.shape[1] - 8
    cat_sat = tokenizer("the cat sat on the mat", add_special_tokens=False)["input_ids"]
    assert input_ids[0, prompt_width : prompt_width + 6].tolist() == cat_sat
    assert maskable[0].nonzero().flatten().tolist() == list(range(prompt_width + 3, prompt_width + 8))
    assert maskable[1].nonzero().flatten().tolist() == list(range(prompt_width, prompt_width + 8))
    response = [prompt_width + i for i in range(8)]
    assert maskable[2].nonzero().flatten().tolist() == response[:2] + response[4:]
    assert input_ids[1, -1].item() == tokenizer.eos_token_id  # responses are padded with EOS
