"""mosa's sampler reproduces the published LLaDA sampler token for token at temperature 0."""

import random

import pytest
import torch

from mosa.sampling import SamplerConfig, generate
from tests.conftest import PlainMaskPredictor, left_pad, tiny_llama
from tests.sampling.reference_llada import reference_generate


def random_setting(seed, tokenizer):
    rng = random.Random(seed)
    gen_length = rng.choice([8, 12, 16, 24, 32])
    block_length = rng.choice([d for d in range(1, gen_length + 1) if gen_length % d == 0 and d >= 4])
    num_blocks = gen_length // block_length
    steps = num_blocks * rng.randint(1, block_length)
    special = tokenizer.eos_token_id, tokenizer.mask_token_id
    words = [i for i in range(len(tokenizer)) if i not in special]
    rows = [[rng.choice(words) for _ in range(rng.randint(2, 9))] for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.2:  # DIJA-style: mask tokens inside the prompt itself
        rows[0][rng.randrange(len(rows[0]))] = tokenizer.mask_token_id
    return dict(
        gen_length=gen_length,
        block_length=block_length,
        steps=steps,
        rows=rows,
        cfg_scale=rng.choice([0.0, 0.0, 0.5, 2.0]),
        logits_eos_inf=rng.random() < 0.3,
        confidence_eos_eot_inf=rng.random() < 0.3,
        plain_module=rng.random() < 0.3,
    )


@pytest.mark.parametrize("seed", range(40))
def test_matches_reference_token_for_token(seed, tokenizer):
    s = random_setting(seed, tokenizer)
    if s["plain_module"]:
        model = PlainMaskPredictor(len(tokenizer), seed=seed)
    else:
        model = tiny_llama(tokenizer, seed=seed).module
    input_ids, attention_mask = left_pad(s["rows"], tokenizer.eos_token_id)
    ids = dict(
        mask_id=tokenizer.mask_token_id, eos_id=tokenizer.eos_token_id, eot_id=tokenizer.convert_tokens_to_ids("<|eot_id|>")
    )
    settings = dict(
        gen_length=s["gen_length"],
        steps=s["steps"],
        block_length=s["block_length"],
        cfg_scale=s["cfg_scale"],
        logits_eos_inf=s["logits_eos_inf"],
        confidence_eos_eot_inf=s["confidence_eos_eot_inf"],
    )
    expected = reference_generate(model, input_ids, attention_mask, **settings, **ids)
    ours = generate(model, input_ids, attention_mask, config=SamplerConfig(**settings, **ids))
    assert torch.equal(ours.sequences, expected), s


def test_matches_reference_without_attention_mask(tokenizer):
    model = tiny_llama(tokenizer, seed=7).module
    input_ids = torch.tensor([[5, 9, 12, 14, 20], [6, 7, 8, 9, 10]])
    settings = dict(gen_length=32, steps=32, block_length=8, mask_id=tokenizer.mask_token_id)
    expected = reference_generate(model, input_ids, None, **settings)
    assert torch.equal(generate(model, input_ids, config=SamplerConfig(**settings)).sequences, expected)


def test_eager_and_sdpa_attention_agree(tokenizer):
    input_ids, attention_mask = left_pad([[5, 9, 12], [6, 7, 8, 9, 10, 11]], tokenizer.eos_token_id)
    config = SamplerConfig(gen_length=16, steps=16, block_length=8, mask_id=tokenizer.mask_token_id)
    outputs = [
        generate(tiny_llama(tokenizer, seed=3, attn_implementation=impl).module, input_ids, attention_mask, config=config)
        for impl in ("eager", "sdpa")
    ]
    assert torch.equal(outputs[0].sequences, outputs[1].sequences)


def test_prefill_equals_reference_with_tokens_in_the_initial_canvas(tokenizer):
    model = tiny_llama(tokenizer, seed=11).module
    input_ids, attention_mask = left_pad([[5, 9, 12], [6, 7, 8, 9]], tokenizer.eos_token_id)
    mask_id, gen_length = tokenizer.mask_token_id, 24
    prefill = {0: [30, 31], 13: [32, 33, 34]}
    initial = torch.full((2, gen_length), mask_id)
    for position, tokens in prefill.items():
        initial[:, position : position + len(tokens)] = torch.tensor(tokens)
    settings = dict(gen_length=gen_length, steps=12, block_length=8, mask_id=mask_id)
    expected = reference_generate(model, input_ids, attention_mask, initial_response=initial, **settings)
    ours = generate(model, input_ids, attention_mask, config=SamplerConfig(**settings), prefill=prefill)
    assert torch.equal(ours.sequences, expected)
