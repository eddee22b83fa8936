"""mosa's sampler against the real upstream LLaDA code, on a model whose confidences tie.

A tiny LLaDA is built with the upstream classes (tests/upstream.py) and its output head is pushed
towards EOS, so that EOS wins at many response positions. Equal confidences then decide commits at
many steps: under `confidence_eos_eot_inf` every EOS position gets confidence 0, and in bf16
probabilities round to the same few values. The reference leaves such ties to torch.topk over the
full canvas row; mosa must commit exactly what it commits. The tests against the reference count
the steps at which a tie decided a commit, so they cannot pass without ties.

References: tests/sampling/reference_llada.py (LLaDA's loop, with attention mask, cfg and both EOS
options) and Fast-dLLM's copy of LLaDA's `generate()` in ../shared/upstream/samplers (one prompt, no
attention mask, no cfg, no EOS options), imported from there, never copied. Fast-dLLM takes the
softmax in float64, so its confidences do not tie on this model; it shows that the in-tree
reference makes the same choices as the real upstream loop.
"""

import copy
import importlib.util
import sys
import types
from contextlib import contextmanager
from types import SimpleNamespace
from unittest import mock

import pytest
import torch

from mosa.sampling import SamplerConfig, generate
from tests.conftest import left_pad
from tests.sampling.reference_llada import reference_generate
from tests.upstream import LLADA_SPECIALS, UPSTREAM, upstream_llada

EOS, EOT, MASK = LLADA_SPECIALS["<|endoftext|>"], LLADA_SPECIALS["<|eot_id|>"], LLADA_SPECIALS["<|mdm_mask|>"]
IDS = dict(mask_id=MASK, eos_id=EOS, eot_id=EOT)
PROMPTS = [[3, 7, 11, 2, 9], [4, 8, 1]]  # left-padded with EOS into one batch
# Each seed and dtype runs these eight: one block or several, cfg, each EOS option and both.
SETTINGS = [
    dict(gen_length=16, steps=8, block_length=8),
    dict(gen_length=16, steps=4, block_length=16, cfg_scale=1.5),
    dict(gen_length=16, steps=4, block_length=16, cfg_scale=1.5, logits_eos_inf=True),
    dict(gen_length=32, steps=8, block_length=16, logits_eos_inf=True),
    dict(gen_length=16, steps=8, block_length=8, confidence_eos_eot_inf=True),
    dict(gen_length=16, steps=4, block_length=8, cfg_scale=1.5, confidence_eos_eot_inf=True),
    dict(gen_length=32, steps=8, block_length=8, cfg_scale=0.5, confidence_eos_eot_inf=True),
    dict(gen_length=16, steps=4, block_length=16, logits_eos_inf=True, confidence_eos_eot_inf=True),
]


def push_towards_eos(model: torch.nn.Module) -> torch.nn.Module:
    """Set the EOS row of the output head to the unit vector along the mean final hidden state of a
    masked canvas. The hidden states of a random LLaDA share one dominant direction, so EOS then
    competes with the best word everywhere and wins at 40-90% of the response positions."""
    head = model.model.transformer.ff_out
    seen = {}
    hook = head.register_forward_hook(lambda module, inputs, output: seen.setdefault("hidden", inputs[0]))
    canvas = torch.tensor([PROMPTS[0] + [MASK] * 16])
    with torch.no_grad():
        model(canvas)
        hook.remove()
        direction = seen["hidden"].mean(dim=(0, 1))
        head.weight[EOS] = direction / direction.norm()
    return model


@pytest.fixture(scope="module")
def eos_heavy():
    """eos_heavy(seed, dtype) -> the pushed model, built once per seed."""
    built = {}

    def get(seed: int, dtype: torch.dtype):
        if seed not in built:
            built[seed] = push_towards_eos(upstream_llada(seed))
        return copy.deepcopy(built[seed]).to(dtype) if dtype != torch.float32 else built[seed]

    return get


@pytest.fixture(scope="module")
def fastdllm_generate():
    """Fast-dLLM's `generate`; its module imports `model.modeling_llada` at the top, stubbed here."""
    stub = types.ModuleType("model.modeling_llada")
    stub.LLaDAModelLM = None
    with mock.patch.dict(sys.modules, {"model": types.ModuleType("model"), "model.modeling_llada": stub}):
        spec = importlib.util.spec_from_file_location("fastdllm_generate", UPSTREAM / "samplers" / "fastdllm_llada_generate.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.generate


@contextmanager
def counting_ties():
    """Count the torch.topk calls whose choice depends on a tie: the k-th and (k+1)-th largest
    values are equal and finite. Yields a one-element list holding the count."""
    count = [0]
    topk = torch.topk

    def counted(values, k, *args, **kwargs):
        ranked = values.sort(descending=True).values
        k = int(k)
        if 0 < k < len(ranked) and torch.isfinite(ranked[k - 1]) and ranked[k - 1] == ranked[k]:
            count[0] += 1
        return topk(values, k, *args, **kwargs)

    with mock.patch.object(torch, "topk", counted):
        yield count


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_equals_reference_on_ties(eos_heavy, dtype, seed):
    # 6 x 8 = 48 runs, two left-padded prompts each; in fp32 the ties come from
    # confidence_eos_eot_inf, in bf16 from rounding as well.
    model = eos_heavy(seed, dtype)
    input_ids, attention_mask = left_pad(PROMPTS, EOS)
    differ, ties = [], 0
    for settings in SETTINGS:
        with counting_ties() as count:
            expected = reference_generate(model, input_ids, attention_mask, **settings, **IDS)
        ties += count[0]
        ours = generate(model, input_ids, attention_mask, config=SamplerConfig(**settings, **IDS))
        if not torch.equal(ours.sequences, expected):
            differ.append(settings)
    assert ties > 0, "no tie decided a commit: the test would pass vacuously"
    assert not differ, differ


class Float64Logits(torch.nn.Module):
    """The model's logits handed over in float64, the dtype of Fast-dLLM's softmax."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.device = model.device

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.model(input_ids, attention_mask=attention_mask).logits.double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_equals_fastdllm_generate(eos_heavy, fastdllm_generate, dtype):
    # Fast-dLLM takes the softmax in float64 where LLaDA takes it in the logits' dtype. In fp32 that
    # changes no choice here; in bf16 it does, so there the model hands its logits over in float64
    # and all three samplers take the same softmax.
    model = eos_heavy(0, dtype)
    model = model if dtype == torch.float32 else Float64Logits(model)
    settings = dict(gen_length=16, steps=8, block_length=8, mask_id=MASK)
    for prompt in PROMPTS:
        input_ids = torch.tensor([prompt])
        upstream, _ = fastdllm_generate(model, input_ids, **settings)
        assert torch.equal(reference_generate(model, input_ids, **settings), upstream), prompt
        assert torch.equal(generate(model, input_ids, config=SamplerConfig(**settings)).sequences, upstream), prompt


def test_prefill_and_interventions_on_ties(eos_heavy):
    model = eos_heavy(0, torch.float32)
    input_ids, attention_mask = left_pad(PROMPTS, EOS)
    settings = dict(gen_length=16, steps=8, block_length=8, confidence_eos_eot_inf=True, **IDS)
    prefill = {2: [20, 21], 11: [22]}  # inside both blocks
    initial = torch.full((2, 16), MASK)  # the same tokens in the reference's initial canvas
    for position, tokens in prefill.items():
        initial[:, position : position + len(tokens)] = torch.tensor(tokens)
    with counting_ties() as count:
        expected = reference_generate(model, input_ids, attention_mask, initial_response=initial, **settings)
    ours = generate(model, input_ids, attention_mask, config=SamplerConfig(**settings), prefill=prefill)
    assert count[0] > 0 and torch.equal(ours.sequences, expected)

    # Interventions take masks away mid-block. A row's count never exceeds the masks left in its
    # block (the counts sum to them, and are spread anew after an intervention), all of which are
    # candidates, so torch.topk never returns a position that is not masked: nothing fixed is
    # recorded as decoded, every other position is decoded within its block's steps, no mask is left.
    interventions = {1: {4: [23, 24]}, 5: {9: [25]}}
    out = generate(
        model, input_ids, attention_mask, config=SamplerConfig(**settings), prefill=prefill, interventions=interventions
    )
    fixed = {2: (20, -1), 3: (21, -1), 11: (22, -1), 4: (23, 1), 5: (24, 1), 9: (25, 5)}  # position: (token, step)
    for position, (token, step) in fixed.items():
        assert (out.response[:, position] == token).all() and (out.commit_step[:, position] == step).all(), position
    decoded = [p for p in range(16) if p not in fixed]
    block_of_step = out.commit_step[:, decoded] // 4  # 4 steps per block
    assert torch.equal(block_of_step, torch.tensor(decoded).expand(2, -1) // 8)
    assert (out.response != MASK).all()
