"""Interventions: tokens written over the canvas at a chosen denoising step, after which sampling goes on."""

import pytest
import torch

from mosa.errors import MosaError
from mosa.sampling import SamplerConfig, generate
from tests.conftest import left_pad, tiny_llama

PROMPT = torch.tensor([[5, 9, 12]])


def config(tokenizer, **settings):
    base = dict(gen_length=16, steps=16, block_length=8, mask_id=tokenizer.mask_token_id, eos_id=tokenizer.eos_token_id)
    return SamplerConfig(**{**base, **settings})


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_llama(tokenizer, seed=21).module


def test_unused_interventions_change_nothing(model, tokenizer):
    plain = generate(model, PROMPT, config=config(tokenizer))
    empty = generate(model, PROMPT, config=config(tokenizer), interventions={})
    assert torch.equal(plain.sequences, empty.sequences) and torch.equal(plain.commit_step, empty.commit_step)


def test_an_intervention_at_step_0_is_a_prefill_committed_at_step_0(model, tokenizer):
    cfg = config(tokenizer, steps=8)
    spans = {3: [40, 41], 10: [42]}
    prefilled = generate(model, PROMPT, config=cfg, prefill=spans)
    intervened = generate(model, PROMPT, config=cfg, interventions={0: spans})
    assert torch.equal(prefilled.sequences, intervened.sequences)
    written = torch.zeros(16, dtype=torch.bool)
    written[[3, 4, 10]] = True
    assert (intervened.commit_step[0, written] == 0).all() and (prefilled.commit_step[0, written] == -1).all()
    assert torch.equal(intervened.commit_step[0, ~written], prefilled.commit_step[0, ~written])


def test_a_later_intervention_overwrites_the_canvas_and_sampling_continues(model, tokenizer):
    cfg = config(tokenizer)  # one token per step, blocks of 8: block 0 at steps 0-7, block 1 at 8-15
    plain = generate(model, PROMPT, config=cfg).commit_step[0]
    step = 5
    overwritten = int(((plain >= 0) & (plain < step)).nonzero()[0])  # already decoded at step 5...
    filled = int(((plain >= step) & (plain < 8)).nonzero()[0])  # ...and still masked there
    writes = {overwritten: [43], filled: [44], 12: [45, 46]}
    out = generate(model, PROMPT, config=cfg, interventions={step: writes})
    response, steps = out.response[0], out.commit_step[0]

    written = torch.zeros(16, dtype=torch.bool)
    written[[overwritten, filled, 12, 13]] = True
    for position, tokens in writes.items():  # the written tokens stay, committed at the intervention step
        assert response[position : position + len(tokens)].tolist() == tokens
    assert (steps[written] == step).all()
    # The steps before it are untouched, and sampling went on: block 0's 2 masks left are spread over
    # its 3 remaining steps (1, 1, 0), block 1's 6 masks over its 8 steps; no mask is left.
    before = (plain < step) & ~written
    assert torch.equal(steps[before], plain[before])
    expected = [1] * step + [1, 1, 0] + [1] * 6 + [0, 0]
    expected[int(plain[overwritten])] = 0
    assert torch.bincount(steps[~written], minlength=16).tolist() == expected
    assert (response != tokenizer.mask_token_id).all()


def test_per_row_interventions_leave_the_other_rows_alone(model, tokenizer):
    cfg = config(tokenizer)
    prompts = [[5, 9, 12], [6, 7, 8, 9]]
    ids, mask = left_pad(prompts, tokenizer.eos_token_id)
    plan = [{}, {6: {2: [40, 41]}}]
    batched = generate(model, ids, mask, config=cfg, interventions=plan)
    for row, prompt in enumerate(prompts):
        alone = generate(model, torch.tensor([prompt]), config=cfg, interventions=plan[row])
        assert torch.equal(batched.response[row], alone.response[0]) and torch.equal(
            batched.commit_step[row], alone.commit_step[0]
        )
    assert batched.response[1, 2:4].tolist() == [40, 41]


@pytest.mark.parametrize(
    "interventions, message",
    [
        ({16: {0: [20]}}, r"intervention at step 16 is outside the denoising steps \[0, 16\)"),
        ({-1: {0: [20]}}, r"intervention at step -1 is outside the denoising steps"),
        ({3: {15: [20, 21]}}, r"intervention at step 3 at response position 15 spans \[15, 17\), outside the response"),
        ({3: {2: [20, 21], 3: [22]}}, "overlaps another intervention span in row 0"),
        ({3: {2: []}}, "is empty"),
        ({3: {"2": [20]}}, "response position '2' must be an integer"),
        ([{}, {}], "interventions has 2 entries for a batch of 1"),
    ],
)
def test_bad_interventions(model, tokenizer, interventions, message):
    with pytest.raises(MosaError, match=message):
        generate(model, PROMPT, config=config(tokenizer), interventions=interventions)


def test_an_intervention_may_not_write_masks(model, tokenizer):
    with pytest.raises(MosaError, match="contains mask_id"):
        generate(model, PROMPT, config=config(tokenizer), interventions={2: {0: [tokenizer.mask_token_id]}})
