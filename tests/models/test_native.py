"""LLaDA, MMaDA and Dream checkpoints built with the real upstream code load natively (transformers'
Llama / Qwen2) and with remote code, and both give the upstream classes' logits."""

import json
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from mosa.errors import MosaError
from mosa.models import load_model
from mosa.models.diffusion_lm import check_loaded
from mosa.sampling import generate
from tests.conftest import left_pad
from tests.sampling.reference_llada import WithoutLogitsToKeep
from tests.upstream import save_upstream_checkpoint, upstream_dream, upstream_llada

BUILDERS = {"llada": upstream_llada, "dream": upstream_dream}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{family: (upstream module, sharded fp32 checkpoint)}, built once."""
    built = {}
    for family, build in BUILDERS.items():
        upstream = build(seed=1)
        built[family] = upstream, save_upstream_checkpoint(upstream, family, tmp_path_factory.mktemp(family))
    return built


def padded_batch():
    """Three rows, two left-padded; token ids of the tiny tokenizers' words and specials."""
    ids = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [5, 1, 2, 3, 4, 5, 6, 7, 8, 9], [9, 8, 7, 6, 5, 4, 3, 2, 1, 2]])
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    mask[1, :1] = 0
    return ids, mask


def upstream_logits(family, upstream, ids, mask):
    """What the upstream code computes for a left-padded batch: LLaDA takes the 2-D mask; Dream's
    generation code builds a 4-D mask and positions counted from the first real token."""
    with torch.no_grad():
        if family == "llada":
            return upstream(ids, attention_mask=mask).logits
        visible = mask.bool()
        mask_4d = visible[:, None, None, :] & visible[:, None, :, None]
        positions = (mask.cumsum(-1) - 1).masked_fill(~visible, 1)
        return upstream(ids, mask_4d, positions).logits


@pytest.mark.parametrize("family", ["llada", "dream"])
@pytest.mark.parametrize("remote", [False, True], ids=["native", "remote-code"])
def test_logits_equal_the_upstream_classes(checkpoints, family, remote):
    upstream, path = checkpoints[family]
    assert len(json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]) > 0
    assert len(list(path.glob("model-*.safetensors"))) >= 2  # sharded, as the 8B checkpoints ship
    lm = load_model(path, trust_remote_code=remote)
    ids, mask = padded_batch()
    expected = upstream_logits(family, upstream, ids, mask)
    with torch.no_grad():
        actual = lm.module(ids, attention_mask=mask).logits
    visible = mask.bool()
    assert (actual - expected)[visible].abs().max() <= 1e-4
    inner = type(lm.module.lm).__name__ if not remote else type(getattr(lm.module, "dream", lm.module)).__name__
    assert (
        inner
        == {
            ("llada", False): "LlamaForCausalLM",
            ("dream", False): "Qwen2ForCausalLM",
            ("llada", True): "LLaDAModelLM",
            ("dream", True): "DreamModel",
        }[family, remote]
    )


def test_native_loading_runs_no_checkpoint_code(checkpoints):
    before = {name for name in sys.modules if name.startswith("transformers_modules")}
    load_model(checkpoints["llada"][1])
    load_model(checkpoints["dream"][1])
    assert {name for name in sys.modules if name.startswith("transformers_modules")} == before


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_special_ids_come_from_the_checkpoint(checkpoints, family):
    lm = load_model(checkpoints[family][1])
    expected = {"llada": (126336, 126081, 126348, 126081, False), "dream": (151666, 151643, 151645, 151643, True)}[family]
    assert (lm.mask_id, lm.eos_id, lm.eot_id, lm.pad_id, lm.logits_shifted) == expected


def test_bf16_native_llada_equals_upstream_bit_for_bit(tmp_path):
    """LLaDA rotates queries and keys in fp32 (rope_full_precision); the native path does the same,
    so even bf16 logits are identical, not merely close."""
    upstream = upstream_llada(seed=2).to(torch.bfloat16)
    path = save_upstream_checkpoint(upstream, "llada", tmp_path / "bf16", max_shard_size=None)
    lm = load_model(path)  # dtype "auto": the checkpoint's bf16, no fp32 copy
    assert {p.dtype for p in lm.module.parameters()} == {torch.bfloat16}
    ids, mask = padded_batch()
    with torch.no_grad():
        actual = lm.module(ids, attention_mask=mask).logits
    expected = upstream_logits("llada", upstream, ids, mask)
    assert torch.equal(actual[mask.bool()], expected[mask.bool()])


def test_bf16_native_dream_matches_upstream(tmp_path):
    upstream = upstream_dream(seed=2).to(torch.bfloat16)
    path = save_upstream_checkpoint(upstream, "dream", tmp_path / "bf16", max_shard_size=None)
    lm = load_model(path)
    ids, mask = padded_batch()
    with torch.no_grad():
        actual = lm.module(ids, attention_mask=mask).logits.float()
    expected = upstream_logits("dream", upstream, ids, mask).float()
    visible = mask.bool()
    assert (actual - expected)[visible].abs().max() <= 0.05 * expected.abs().max()
    assert (actual.argmax(-1) == expected.argmax(-1))[visible].float().mean() >= 0.95


def test_mmada_loads_as_llada(tmp_path):
    """MMaDA's model class subclasses LLaDA's with the same weights and config keys; model_type differs."""
    upstream = upstream_llada(seed=3)
    path = save_upstream_checkpoint(upstream, "llada", tmp_path / "mmada")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "mmada"}))
    lm = load_model(path)
    ids, mask = padded_batch()
    with torch.no_grad():
        actual = lm.module(ids, attention_mask=mask).logits
    assert lm.family == "mmada"
    assert (actual - upstream_logits("llada", upstream, ids, mask))[mask.bool()].abs().max() <= 1e-4


def test_native_module_offers_the_transformers_features(checkpoints):
    lm = load_model(checkpoints["llada"][1])
    ids, mask = padded_batch()
    with torch.no_grad():
        full = lm.module(ids, attention_mask=mask).logits
        kept = lm.module(ids, attention_mask=mask, logits_to_keep=torch.tensor([4, 5, 9])).logits
        embedded = lm.module(inputs_embeds=lm.module.get_input_embeddings()(ids), attention_mask=mask).logits
    assert torch.allclose(kept, full[:, [4, 5, 9]], atol=1e-5)
    assert torch.allclose(embedded, full, atol=1e-5)
    lm.module.lm.gradient_checkpointing_enable()
    assert lm.module.lm.model.gradient_checkpointing


def test_one_lora_step_is_the_same_on_both_paths(checkpoints):
    """peft LoRA on q_proj and v_proj (names both paths share): the same seed gives the same adapter,
    the same loss before and after one optimiser step."""
    from peft import LoraConfig, get_peft_model

    ids, mask = padded_batch()
    losses = []
    for remote in (False, True):
        lm = load_model(checkpoints["llada"][1], trust_remote_code=remote)
        torch.manual_seed(0)
        model = get_peft_model(
            lm.module, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights="gaussian")
        )
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=0.5)
        trajectory = []
        for _ in range(2):
            logits = model(input_ids=ids, attention_mask=mask).logits
            loss = torch.nn.functional.cross_entropy(logits[mask.bool()], ids[mask.bool()])
            trajectory.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        losses.append(trajectory)
    assert losses[0][1] != losses[0][0]  # the step moved the adapter
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_a_config_the_native_path_cannot_reproduce_is_refused(checkpoints, tmp_path):
    path = save_upstream_checkpoint(upstream_llada(seed=4), "llada", tmp_path / "alibi", max_shard_size=None)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "attention_layer_norm": True}))
    with pytest.raises(MosaError, match=r"attention_layer_norm=True.*--trust-remote-code"):
        load_model(path)


def test_a_checkpoint_missing_weights_is_refused(tmp_path):
    path = save_upstream_checkpoint(upstream_llada(seed=4), "llada", tmp_path / "partial", max_shard_size=None)
    weights = load_file(path / "model.safetensors")
    del weights["model.transformer.blocks.1.ff_out.weight"]
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(MosaError, match=r"lacks weights for a llada model \(model.layers.1.mlp.down_proj.weight\)"):
        load_model(path)


def test_the_load_check_refuses_wrong_rotary_tables_and_non_finite_logits(checkpoints):
    lm = load_model(checkpoints["dream"][1], trust_remote_code=True)
    rotary = lm.module.dream.model.rotary_emb
    good = rotary.inv_freq.clone()
    rotary.inv_freq.zero_()  # what meta-device loading left before mosa recomputed it
    with pytest.raises(MosaError, match=r"rotary table dream.model.rotary_emb differs from RoPE with theta 1e\+06"):
        check_loaded(lm, "tiny-dream")
    rotary.inv_freq.copy_(good)
    with torch.no_grad():
        lm.module.dream.lm_head.weight[0, 0] = float("nan")
    with pytest.raises(MosaError, match="logits are not finite"):
        check_loaded(lm, "tiny-dream")


def test_dream_takes_the_output_head_fast_path_with_the_same_tokens(checkpoints):
    """Dream's logits are one position late: the fast path keeps positions shifted by one (position 0
    by itself, as the alignment does), here with a mask at canvas position 0 so that the window starts there."""
    lm = load_model(checkpoints["dream"][1])
    ids, mask = left_pad([[lm.mask_id, 5, 6, 7], [3, 4]], lm.pad_id)
    config = lm.sampler_config(gen_length=16, steps=16, block_length=8)
    kept = []
    hook = lm.module.register_forward_pre_hook(
        lambda _, args, kwargs: kept.append(kwargs.get("logits_to_keep")), with_kwargs=True
    )
    fast = generate(lm.module, ids, mask, config=config)
    hook.remove()
    full = generate(WithoutLogitsToKeep(lm.module), ids, mask, config=config)
    assert all(isinstance(positions, torch.Tensor) for positions in kept) and int(kept[0][0]) == 0
    assert torch.equal(fast.sequences, full.sequences)
