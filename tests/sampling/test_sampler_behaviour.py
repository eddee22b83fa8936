"""Batch invariance, prefill, the decoding-order trace, remasking rules and Dream's shifted logits."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mosa.sampling import REMASKING_RULES, SamplerConfig, generate
from mosa.sampling.sampler import commit_schedule, top_k_commits
from tests.conftest import left_pad, tiny_llama

PROMPTS = [[5, 9, 12], [6, 7, 8, 9, 10, 11, 20], [25, 26], [30, 31, 32, 33]]


def config(tokenizer, **settings):
    base = dict(gen_length=16, steps=16, block_length=8, mask_id=tokenizer.mask_token_id, eos_id=tokenizer.eos_token_id)
    return SamplerConfig(**{**base, **settings})


@pytest.mark.parametrize(
    "settings",
    [
        dict(),
        dict(block_length=16, steps=8),
        dict(cfg_scale=1.0),
        dict(remasking="margin"),
        dict(remasking="entropy"),
    ],
)
def test_a_row_does_not_depend_on_the_rest_of_the_batch(tokenizer, settings):
    lm = tiny_llama(tokenizer, seed=5)
    cfg = config(tokenizer, **settings)
    batch_ids, batch_mask = left_pad(PROMPTS, tokenizer.eos_token_id)
    batched = generate(lm.module, batch_ids, batch_mask, config=cfg)
    for row, prompt in enumerate(PROMPTS):
        alone = generate(lm.module, torch.tensor([prompt]), config=cfg)
        assert torch.equal(batched.response[row], alone.response[0]), row
        assert torch.equal(batched.commit_step[row], alone.commit_step[0]), row


def test_batch_invariance_holds_with_per_row_prefill(tokenizer):
    lm = tiny_llama(tokenizer, seed=6)
    cfg = config(tokenizer)
    prefills = [{0: [40]}, {8: [41, 42]}, {}, {3: [43], 12: [44, 45]}]
    batch_ids, batch_mask = left_pad(PROMPTS, tokenizer.eos_token_id)
    batched = generate(lm.module, batch_ids, batch_mask, config=cfg, prefill=prefills)
    for row, prompt in enumerate(PROMPTS):
        alone = generate(lm.module, torch.tensor([prompt]), config=cfg, prefill=prefills[row])
        assert torch.equal(batched.response[row], alone.response[0]), row


def test_prefilled_tokens_stay_and_are_not_counted_as_masks(tokenizer):
    lm = tiny_llama(tokenizer, seed=8)
    cfg = config(tokenizer, gen_length=16, steps=8, block_length=8)
    prefill = {2: [40, 41], 9: [42]}
    out = generate(lm.module, torch.tensor([[5, 9, 12]]), config=cfg, prefill=prefill)
    response, steps = out.response[0], out.commit_step[0]
    assert response[2:4].tolist() == [40, 41] and response[9].item() == 42
    prefilled = torch.zeros(16, dtype=torch.bool)
    prefilled[[2, 3, 9]] = True
    assert (steps[prefilled] == -1).all()
    assert (response != tokenizer.mask_token_id).all()
    # Block 0 has 6 masks over 4 steps (2, 2, 1, 1); block 1 has 7 (2, 2, 2, 1).
    counts = torch.bincount(steps[~prefilled], minlength=8).tolist()
    assert counts == [2, 2, 1, 1, 2, 2, 2, 1]


def test_commit_step_records_the_decoding_order(tokenizer):
    lm = tiny_llama(tokenizer, seed=9)
    out = generate(lm.module, torch.tensor([[5, 9, 12]]), config=config(tokenizer, gen_length=16, steps=16, block_length=4))
    steps = out.commit_step[0]
    assert sorted(steps.tolist()) == list(range(16))  # one token per step, each step once
    for block in range(4):  # semi-autoregressive: block b is decoded at steps 4b..4b+3
        assert sorted(steps[4 * block : 4 * block + 4].tolist()) == list(range(4 * block, 4 * block + 4))


def test_commit_schedule_front_loads_the_remainder():
    assert commit_schedule(torch.tensor([10, 3, 0]), 4).tolist() == [[3, 3, 2, 2], [1, 1, 1, 0], [0, 0, 0, 0]]


def test_top_k_commits_ranks_each_full_canvas_row_with_torch_topk():
    # A canvas of 8 columns whose candidate window is columns [3, 7); row 0 has a three-way tie.
    confidence = torch.tensor([[0.5, 0.9, 0.5, 0.5], [0.3, 0.2, 0.8, 0.7]])
    is_masked = torch.tensor([[True, True, True, True], [True, False, True, True]])
    k = torch.tensor([2, 1])
    commits = top_k_commits(confidence, is_masked, k, window_start=3, canvas_length=8)
    for row in range(2):
        full_row = torch.full((8,), -torch.inf)
        full_row[3:7] = torch.where(is_masked[row], confidence[row], -torch.inf)
        expected = torch.zeros(8, dtype=torch.bool)
        expected[torch.topk(full_row, int(k[row])).indices] = True
        assert commits[row].tolist() == expected[3:7].tolist()
    assert commits.sum(dim=1).tolist() == [2, 1] and bool(commits[0, 1])


def test_top_k_commits_never_commits_a_position_that_is_not_masked():
    # k = 3 exceeds the two masked candidates, so topk must return a -inf column: it is not committed.
    confidence = torch.tensor([[0.4, 0.9, 0.1]])
    is_masked = torch.tensor([[True, False, True]])
    commits = top_k_commits(confidence, is_masked, torch.tensor([3]), window_start=1, canvas_length=5)
    assert commits.tolist() == [[True, False, True]]


def test_remasking_rules_are_registered_and_ordered():
    assert {"low_confidence", "random", "margin", "entropy"} <= set(REMASKING_RULES)
    logits = torch.tensor([[[4.0, 0.0, 0.0], [1.0, 0.9, 0.0], [2.0, 2.0, 2.0]]])
    x0 = logits.argmax(-1)
    for name in ("low_confidence", "margin", "entropy"):
        confidence = REMASKING_RULES[name](logits, x0, None)[0]
        assert confidence[0] > confidence[1] > confidence[2], name
    margin = REMASKING_RULES["margin"](logits, x0, None)[0]
    assert margin[2].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_at_temperature_1_a_rows_sample_follows_its_prompt_not_its_batch(tokenizer, remasking):
    lm = tiny_llama(tokenizer, seed=13)
    cfg = config(tokenizer, temperature=1.0, remasking=remasking, seed=3)

    def sample(rows, prompt_ids=None):
        ids, mask = left_pad(rows, tokenizer.eos_token_id)
        return generate(lm.module, ids, mask, config=cfg, prompt_ids=prompt_ids).response

    prompt, first, second, third = PROMPTS
    alone = sample([prompt])[0]
    # First, middle and last of three; then batches of two and four.
    for batch in ([prompt, first, second], [first, prompt, second], [third, second, prompt], [first, prompt], PROMPTS):
        assert torch.equal(sample(batch)[batch.index(prompt)], alone), batch
    # By default a row's noise follows its prompt's tokens; given ids, it follows the ids.
    assert torch.equal(sample([prompt, first], prompt_ids=["a", "b"])[0], sample([second, prompt], prompt_ids=["c", "a"])[1])
    copies = sample([prompt, prompt])
    assert torch.equal(copies[0], copies[1])  # one prompt, one noise
    named = sample([prompt, prompt], prompt_ids=["a", "b"])
    assert not torch.equal(named[0], named[1])  # two prompt ids in one batch, two noises


def test_sampling_is_reproducible_with_a_seed(tokenizer):
    lm = tiny_llama(tokenizer, seed=10)
    ids = torch.tensor([[5, 9, 12]])
    runs = [
        generate(lm.module, ids, config=config(tokenizer, temperature=1.0, remasking="random", seed=s)).sequences
        for s in (1, 1, 2)
    ]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


class ShiftedCopy(nn.Module):
    """Dream's convention: the prediction for token i comes out at position i - 1."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None):
        logits = self.inner(input_ids, attention_mask=attention_mask).logits
        return SimpleNamespace(logits=torch.cat([logits[:, 1:], logits[:, -1:]], dim=1))


def test_shifted_logits_are_realigned(tokenizer):
    aligned = tiny_llama(tokenizer, seed=12).module
    ids, mask = left_pad(PROMPTS[:2], tokenizer.eos_token_id)
    expected = generate(aligned, ids, mask, config=config(tokenizer))
    shifted = generate(ShiftedCopy(aligned), ids, mask, config=config(tokenizer, shift_logits=True))
    assert torch.equal(expected.sequences, shifted.sequences)
