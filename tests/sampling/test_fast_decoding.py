"""The fast approximate decodings (mosa.sampling.fast): where they must equal the exact loop, the
caches' logits against the full forward pass, the threshold rule, per-row steps, and bad settings."""

import pytest
import torch

from mosa.errors import MosaError
from mosa.models.native import random_native
from mosa.sampling import SamplerConfig, generate
from mosa.sampling.fast import CanvasCache
from tests.conftest import PlainMaskPredictor, left_pad, tiny_llama

TINY_LLADA = {
    "model_type": "llada",
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 4,
    "mlp_hidden_size": 192,
    "vocab_size": 120,
    "rope_theta": 500000.0,
    "rope_full_precision": True,
    "max_sequence_length": 512,
    "mask_token_id": 119,
    "eos_token_id": 1,
}
TINY_DREAM = {
    "model_type": "dream",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 120,
    "max_position_embeddings": 512,
    "mask_token_id": 119,
}
CACHES = ("prefix-cache", "dual-cache")


def sharpened(module, seed, mask_id=119):
    """Spread-out logits (large random weights), so that argmax and confidence ties do not occur, and
    a mask logit of 0 among large ones, so that the model does not predict the mask token itself."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        module.lm.lm_head.weight[mask_id] = 0
    return module


@pytest.fixture(scope="module")
def models(tokenizer):
    """(module, mask id, shift_logits): a bidirectional Llama, native LLaDA (absolute positions), native Dream (shifted)."""
    return {
        "llama": (tiny_llama(tokenizer, seed=5).module, tokenizer.mask_token_id, False),
        "llada": (sharpened(random_native("llada", TINY_LLADA, dtype=torch.float32), 1), 119, False),
        "dream": (sharpened(random_native("dream", TINY_DREAM, dtype=torch.float32), 2), 119, True),
    }


def prompts(pad_id=1):
    return left_pad([[5, 9, 12, 7, 30], [8, 11]], pad_id)


def config(mask_id, shift, **settings):
    base = dict(gen_length=32, steps=32, block_length=8, mask_id=mask_id, shift_logits=shift, eos_id=1)
    return SamplerConfig(**{**base, **settings})


@pytest.mark.parametrize("family", ["llama", "llada", "dream"])
def test_threshold_above_every_confidence_is_the_exact_one_token_per_step_order(models, family):
    # Every confidence of these random models is far below 1, so the rule commits only the most
    # confident mask per step: the exact loop at steps = gen_length, commit steps included.
    module, mask_id, shift = models[family]
    ids, mask = prompts()
    exact = generate(module, ids, mask, config=config(mask_id, shift))
    fast = generate(module, ids, mask, config=config(mask_id, shift, decoding="threshold", threshold=1.0))
    assert torch.equal(fast.sequences, exact.sequences) and torch.equal(fast.commit_step, exact.commit_step)
    assert fast.forward_passes == exact.forward_passes == 32


@pytest.mark.parametrize("family", ["llama", "llada", "dream"])
@pytest.mark.parametrize("decoding", CACHES)
def test_a_cache_with_one_step_per_block_is_exact(models, family, decoding):
    # A block's first step runs the whole canvas, so with one step per block (steps = 4 blocks) the
    # caches change nothing; so does a threshold low enough to fill each block at its first step.
    module, mask_id, shift = models[family]
    ids, mask = prompts()
    exact = generate(module, ids, mask, config=config(mask_id, shift, steps=4))
    scheduled = generate(module, ids, mask, config=config(mask_id, shift, steps=4, decoding=decoding))
    low = generate(module, ids, mask, config=config(mask_id, shift, decoding=decoding, threshold=1e-9))
    for out in (scheduled, low):
        assert torch.equal(out.sequences, exact.sequences) and torch.equal(out.commit_step, exact.commit_step)
        assert out.forward_passes == 4


@pytest.mark.parametrize("family", ["llama", "llada", "dream"])
@pytest.mark.parametrize("decoding", CACHES)
def test_cached_logits_equal_the_full_pass_at_the_block_boundary(models, family, decoding):
    # Where Fast-dLLM's caches are exact: on the canvas the cache was built from. At a block's first
    # step (refresh) and at a step run from the cache before anything changed, the block's logits equal
    # those of the full forward pass, within float tolerance (only the order of the keys differs).
    module, mask_id, shift = models[family]
    ids, mask = prompts()
    cfg = config(mask_id, shift, decoding=decoding, threshold=0.5)
    x = torch.full((2, ids.shape[1] + 32), mask_id)
    x[:, : ids.shape[1]] = ids
    x[:, ids.shape[1] : ids.shape[1] + 8] = torch.randint(20, 45, (2, 8), generator=torch.Generator().manual_seed(0))
    canvas_mask = torch.cat([mask, torch.ones(2, 32, dtype=mask.dtype)], dim=1)
    start, end = ids.shape[1] + 8, ids.shape[1] + 16  # block 1, after a finished block 0
    with torch.no_grad():
        full = module(x, attention_mask=canvas_mask).logits
        expected = full[:, start - 1 : end - 1] if shift else full[:, start:end]
        cache = CanvasCache(module, canvas_mask, cfg, 2, x.shape[1])
        refreshed, _ = cache.block_logits(x, start, end, refresh=torch.tensor([True, True]))
        reused, _ = cache.block_logits(x, start, end, refresh=torch.tensor([False, False]))
    torch.testing.assert_close(refreshed, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reused, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("decoding", ["threshold", *CACHES])
def test_fast_decodings_fill_the_response_in_fewer_passes(models, decoding):
    module, mask_id, shift = models["llada"]
    ids, mask = prompts()
    out = generate(module, ids, mask, config=config(mask_id, shift, decoding=decoding, threshold=0.3))
    assert not (out.response == mask_id).any()
    assert 4 <= out.forward_passes < 32  # at least one step per block, fewer than one per token
    # every position committed at a step, and each row's steps count up from 0 without a gap
    for row in out.commit_step:
        assert (row >= 0).all() and sorted(set(row.tolist())) == list(range(int(row.max()) + 1))


def test_the_threshold_rule_commits_every_confident_mask_and_the_most_confident(models):
    # One step by hand on one block: the commits are exactly {top-1} | {confidence >= threshold}.
    module, mask_id, shift = models["llama"]
    ids = torch.tensor([[5, 9, 12]])
    cfg = config(mask_id, shift, gen_length=8, steps=8, block_length=8, decoding="threshold", threshold=0.2)
    canvas = torch.cat([ids, torch.full((1, 8), mask_id)], dim=1)
    with torch.no_grad():
        probabilities = module(canvas).logits[0, 3:].softmax(-1)
    confidence, tokens = probabilities.max(-1)
    expected = (confidence >= 0.2) | (confidence == confidence.max())
    out = generate(module, ids, config=cfg)
    first = out.commit_step[0] == 0
    assert 1 < int(expected.sum()) < 8, "the model should be confident at some positions but not all"
    assert torch.equal(first, expected) and torch.equal(out.response[0, first], tokens[first])


@pytest.mark.parametrize("decoding", ["threshold", "dual-cache"])
def test_a_rows_output_does_not_depend_on_its_batch(models, decoding):
    # Rows fill their blocks in different numbers of steps; each counts its own (noise, interventions).
    module, mask_id, shift = models["llada"]
    rows = [[5, 9, 12, 7, 30], [8, 11], [40, 41, 42]]
    cfg = config(mask_id, shift, decoding=decoding, threshold=0.4, temperature=0.8)
    writes = [{3: {2: [40, 41]}}, {}, {1: {20: [42]}}]
    ids, mask = left_pad(rows, 1)
    together = generate(module, ids, mask, config=cfg, interventions=writes)
    for row, prompt in enumerate(rows):
        alone = generate(module, torch.tensor([prompt]), config=cfg, interventions=[writes[row]])
        assert torch.equal(alone.response[0], together.response[row])
        assert torch.equal(alone.commit_step[0], together.commit_step[row])


def test_interventions_at_steps_never_reached_are_written_over_the_final_canvas(models):
    module, mask_id, shift = models["llada"]
    ids = torch.tensor([[5, 9, 12]])
    cfg = config(mask_id, shift, decoding="threshold", threshold=1e-9)  # one step per block: steps 0-3
    out = generate(module, ids, config=cfg, interventions={2: {9: [40]}, 31: {0: [41, 42]}})
    assert out.response[0, 9] == 40 and out.commit_step[0, 9] == 2
    assert out.response[0, :2].tolist() == [41, 42] and out.commit_step[0, :2].tolist() == [31, 31]


def test_bans_hold_under_fast_decoding(models):
    module, mask_id, shift = models["llada"]
    ids = torch.tensor([[5, 9, 12]])
    cfg = config(mask_id, shift, decoding="dual-cache", threshold=0.3)
    free = generate(module, ids, config=cfg).response[0]
    banned = generate(module, ids, config=cfg, bans={10: [[int(free[10])]]})
    assert banned.response[0, 10] != free[10] and not (banned.response == mask_id).any()


def test_exact_counts_its_forward_passes(models):
    module, mask_id, shift = models["llama"]
    out = generate(module, torch.tensor([[5, 9]]), config=config(mask_id, shift, steps=16), prefill={0: [40] * 8})
    assert out.forward_passes == 12  # block 0, all prefilled, skips its 4 idle steps


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(decoding="fast"), "decoding='fast' must be one of exact, threshold, prefix-cache, dual-cache"),
        (dict(decoding="threshold"), "decoding=threshold needs a threshold"),
        (dict(decoding="threshold", threshold=0.0), "threshold=0.0 must be a confidence in (0, 1]"),
        (dict(decoding="threshold", threshold=1.5), "threshold=1.5 must be a confidence in (0, 1]"),
        (dict(threshold=0.9), "threshold is set but decoding is exact"),
        (dict(decoding="dual-cache", block_length=32, steps=32), "needs block_length < gen_length"),
        (dict(decoding="prefix-cache", cfg_scale=1.0), "does not support cfg_scale > 0"),
    ],
)
def test_bad_decoding_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(MosaError, match=None) as error:
        config(0, False, **settings).validate(require_ids=False)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_caches_need_a_module_that_takes_one(tokenizer):
    module = PlainMaskPredictor(len(tokenizer))
    cfg = config(tokenizer.mask_token_id, False, decoding="prefix-cache")
    with pytest.raises(MosaError, match="needs a model that takes a KV cache"):
        generate(module, torch.tensor([[5, 9]]), config=cfg)
    # the threshold rule alone runs on any module
    out = generate(
        module, torch.tensor([[5, 9]]), config=config(tokenizer.mask_token_id, False, decoding="threshold", threshold=0.5)
    )
    assert not (out.response == tokenizer.mask_token_id).any()
