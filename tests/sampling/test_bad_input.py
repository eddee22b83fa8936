"""Bad sampler input is refused with one MosaError line that names the parameter."""

import pytest
import torch

from mosa.errors import MosaError
from mosa.sampling import SamplerConfig, generate
from tests.conftest import tiny_llama

PROMPT = torch.tensor([[5, 9, 12]])


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_llama(tokenizer).module


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(gen_length=16, block_length=5), "block_length=5 must divide gen_length=16"),
        (dict(gen_length=16, block_length=4, steps=6), "steps=6 must be a multiple of the number of blocks"),
        (dict(gen_length=8, block_length=8, steps=16), "steps=16 exceeds gen_length=8"),
        (dict(gen_length=0), "gen_length=0 must be a positive integer"),
        (dict(temperature=-1.0), "temperature=-1.0 must be a number >= 0"),
        (dict(cfg_scale="high"), "cfg_scale='high' must be a number >= 0"),
        (dict(remasking="lowest"), "remasking='lowest' is not a known rule"),
        (dict(mask_id=10_000), "mask_id=10000 is outside the model's vocabulary"),
        (dict(mask_id=None), "mask_id is not set"),
        (dict(logits_eos_inf=True, eos_id=None), "logits_eos_inf needs eos_id"),
    ],
)
def test_bad_config(model, tokenizer, settings, message):
    base = dict(gen_length=16, steps=16, block_length=8, mask_id=tokenizer.mask_token_id, eos_id=tokenizer.eos_token_id)
    with pytest.raises(MosaError, match=message.replace("(", r"\(").replace("[", r"\[")):
        generate(model, PROMPT, config=SamplerConfig(**{**base, **settings}))


@pytest.mark.parametrize(
    "prefill, message",
    [
        ({14: [20, 21, 22]}, "outside the response"),
        ({-1: [20]}, "outside the response"),
        ({2: [20, 21], 3: [22]}, "overlaps another prefill span"),
        ({2: []}, "is empty"),
    ],
)
def test_bad_prefill(model, tokenizer, prefill, message):
    config = SamplerConfig(gen_length=16, steps=16, block_length=8, mask_id=tokenizer.mask_token_id)
    with pytest.raises(MosaError, match=message):
        generate(model, PROMPT, config=config, prefill=prefill)


def test_bad_prompts(model, tokenizer):
    mask_id = tokenizer.mask_token_id
    config = SamplerConfig(gen_length=8, steps=8, block_length=8, mask_id=mask_id)
    with pytest.raises(MosaError, match="the prompt is empty"):
        generate(model, torch.zeros((1, 0), dtype=torch.long), config=config)
    with pytest.raises(MosaError, match=r"prompt rows \[1\] are empty"):
        generate(model, torch.tensor([[5, 6], [2, 2]]), torch.tensor([[1, 1], [0, 0]]), config=config)
    with pytest.raises(MosaError, match="pad id equals mask id"):
        generate(model, torch.tensor([[mask_id, 6], [5, 6]]), torch.tensor([[0, 1], [1, 1]]), config=config)
    with pytest.raises(MosaError, match="outside the model's vocabulary"):
        generate(model, torch.tensor([[5, 10_000]]), config=config)
    with pytest.raises(MosaError, match="integer tensor"):
        generate(model, torch.tensor([[0.5, 1.0]]), config=config)
    with pytest.raises(MosaError, match="prompt_ids has 2 ids for a batch of 1; give one per row"):
        generate(model, PROMPT, config=config, prompt_ids=["a", "b"])
