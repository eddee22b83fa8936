"""LoRA targets follow the model that is loaded, and a target that matches no linear layer is an error."""

import json

import pytest

from mosa.align.trainer import LORA_TARGETS, MosaConfig, lora_targets, train_mosa
from mosa.errors import MosaError
from mosa.models import wrap_model
from tests.conftest import tiny_llama
from tests.upstream import llada_tokenizer, upstream_dream, upstream_llada

LLAMA_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj")
LLADA_OWN_NAMES = ("q_proj", "k_proj", "v_proj", "attn_out")


def test_the_defaults_are_the_attention_projections_under_each_layouts_names():
    assert LORA_TARGETS == (LLAMA_NAMES, LLADA_OWN_NAMES)
    assert MosaConfig().target_modules is None  # taken from the model at training time


def test_a_llama_layout_gets_q_k_v_o(tokenizer):
    # LLaDA, LLaDA-1.5, MMaDA and Dream loaded natively are transformers Llama / Qwen2 modules, as this is.
    assert lora_targets(tiny_llama(tokenizer).module, None) == LLAMA_NAMES


def test_the_upstream_models_get_the_names_their_code_uses():
    assert lora_targets(upstream_llada(), None) == LLADA_OWN_NAMES
    assert lora_targets(upstream_dream(), None) == LLAMA_NAMES


def test_a_target_that_matches_nothing_names_it_and_the_models_linear_layers():
    with pytest.raises(MosaError) as refused:
        lora_targets(upstream_llada(), LLAMA_NAMES)
    message = str(refused.value)
    assert "\n" not in message
    assert message == (
        "LoRA target_modules ['o_proj'] match no linear layer of LLaDAModelLM; its linear layers: "
        "attn_out, ff_out, ff_proj, k_proj, q_proj, up_proj, v_proj"
    )


def test_a_model_without_a_known_layout_must_name_its_targets(tokenizer):
    from tests.conftest import PlainMaskPredictor

    with pytest.raises(
        MosaError,
        match=r"no default LoRA targets for PlainMaskPredictor \(its linear layers: head, "
        r"linear1, linear2, out_proj\); set target_modules",
    ):
        lora_targets(PlainMaskPredictor(len(tokenizer)), None)
    assert lora_targets(PlainMaskPredictor(len(tokenizer)), ("layer.linear1", "out_proj")) == ("layer.linear1", "out_proj")


def test_mosa_trains_llada_own_code_on_its_own_names_and_records_them(tmp_path):
    lm = wrap_model(upstream_llada(), llada_tokenizer(), "llada")
    config = MosaConfig(
        response_length=16,
        window=(4, 16),
        max_steps=1,
        batch_size=2,
        lora_r=2,
        lora_alpha=4,
        save_every=1,
        safe_sentences=("how do magnets work",),
        harmful_sentences=("the next step is",),
    )
    train_mosa(lm, ["hello world", "write a haiku about rain"], config, tmp_path / "run", progress=False)
    assert tuple(json.loads((tmp_path / "run" / "config.json").read_text())["target_modules"]) == LLADA_OWN_NAMES
    adapted = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in lm.module.named_parameters() if ".lora_A" in name}
    assert adapted == set(LLADA_OWN_NAMES)
    adapter_config = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert set(adapter_config["target_modules"]) == set(LLADA_OWN_NAMES)

    wrong = MosaConfig(**{**config.__dict__, "target_modules": LLAMA_NAMES})
    with pytest.raises(MosaError, match=r"LoRA target_modules \['o_proj'\] match no linear layer"):
        train_mosa(
            wrap_model(upstream_llada(), llada_tokenizer(), "llada"), ["hello world"], wrong, tmp_path / "wrong", progress=False
        )
    assert not (tmp_path / "wrong").exists()  # refused before anything was written
