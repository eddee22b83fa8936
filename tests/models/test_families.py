"""Model families: golden chat renderings, remote-code gating, special ids, Dream's shift."""

import json
import sys
from pathlib import Path

import pytest
import torch

from mosa.errors import MosaError
from mosa.models import load_model, wrap_model
from mosa.models.build import build_word_tokenizer, save_model
from mosa.models.chat_templates import DREAM_TEMPLATE, LLADA_TEMPLATE
from mosa.sampling import generate
from tests.conftest import tiny_llama
from tests.upstream import save_upstream_checkpoint, upstream_dream, upstream_llada

REMOTE_CODE = Path(__file__).parent / "remote_code"
WORDS = "hello world You are a helpful assistant assistant. user system".split()

LLADA_SPECIALS = {
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "pad_token": "<|endoftext|>",
    "unk_token": "<unk>",
}
LLADA_EXTRA = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|mdm_mask|>"]
DREAM_SPECIALS = {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<unk>", "mask_token": "<|mask|>"}
DREAM_EXTRA = ["<|im_start|>", "<|im_end|>"]


def llada_tokenizer():
    # ids: <|startoftext|> 0, <|endoftext|> 1, <unk> 2, start_header 3, end_header 4, eot 5, mask 6, words from 7
    return build_word_tokenizer(WORDS, special_tokens=LLADA_SPECIALS, extra_tokens=LLADA_EXTRA, chat_template=LLADA_TEMPLATE)


def dream_tokenizer():
    # ids: <|endoftext|> 0, <unk> 1, <|mask|> 2, im_start 3, im_end 4, words from 5
    return build_word_tokenizer(WORDS, special_tokens=DREAM_SPECIALS, extra_tokens=DREAM_EXTRA, chat_template=DREAM_TEMPLATE)


def remote_checkpoint(tmp_path, tokenizer, name, shifted, mask_token_id=None):
    """Save a tiny model as a remote-code checkpoint: config.json + auto_map + its .py files. Its
    model_type stays its own ("tiny-dlm"): load it with family= ("llada", "dream")."""
    sys.path.insert(0, str(REMOTE_CODE.parent))
    try:
        from remote_code.configuration_tiny_dlm import TinyDLMConfig
        from remote_code.modeling_tiny_dlm import TinyDLM
    finally:
        sys.path.pop(0)
    TinyDLMConfig.register_for_auto_class()
    TinyDLM.register_for_auto_class("AutoModel")
    torch.manual_seed(0)
    model = TinyDLM(TinyDLMConfig(vocab_size=len(tokenizer), shifted=shifted, mask_token_id=mask_token_id))
    path = tmp_path / name
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_golden_llada_chat_ids(tmp_path):
    lm = load_model(save_upstream_checkpoint(upstream_llada(), "llada", tmp_path / "llada", max_shard_size=None))
    hello, world = 1, 2
    bos, start, end, eot = 126080, 126346, 126347, 126348
    user, assistant = lm.tokenizer.convert_tokens_to_ids(["user", "assistant"])
    assert lm.render_chat("hello world") == [bos, start, user, end, hello, world, eot, start, assistant, end]
    assert (lm.family, lm.mask_id, lm.eos_id, lm.eot_id, lm.pad_id) == ("llada", 126336, 126081, 126348, 126081)


def test_golden_dream_chat_ids(tmp_path):
    """ChatML with Qwen's default system turn; the tiny word tokenizer knows no "You" nor "assistant." (0)."""
    lm = load_model(save_upstream_checkpoint(upstream_dream(), "dream", tmp_path / "dream", max_shard_size=None))
    start, end = 151644, 151645
    system, are, a, helpful, user, hello, world, assistant = lm.tokenizer.convert_tokens_to_ids(
        ["system", "are", "a", "helpful", "user", "hello", "world", "assistant"]
    )
    expected = [start, system, 0, are, a, helpful, 0, end, start, user, hello, world, end, start, assistant]
    assert lm.render_chat("hello world") == expected
    assert (lm.family, lm.mask_id, lm.eos_id, lm.eot_id, lm.logits_shifted) == ("dream", 151666, 151643, 151645, True)


def test_golden_bidirectional_chat_ids(tokenizer):
    lm = tiny_llama(tokenizer)
    bos, user, eot, assistant = 1, 6, 4, 7
    hello, world = tokenizer.convert_tokens_to_ids(["hello", "world"])
    assert lm.render_chat("hello world") == [bos, user, hello, world, eot, assistant]
    assert lm.render_chat([{"role": "system", "content": "the cat"}, {"role": "user", "content": "hello"}])[:2] == [bos, 5]


def test_a_llada_label_on_another_shape_points_to_remote_code(tmp_path):
    """Without the flag a 'llada' checkpoint loads natively; one that is not LLaDA-shaped is refused in
    one line that names the way out, and its code never runs."""
    path = remote_checkpoint(tmp_path, llada_tokenizer(), "llada", shifted=False, mask_token_id=6)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "llada"}))
    with pytest.raises(
        MosaError,
        match=r"has no d_model, n_layers, n_heads, so it is not a LLaDA-shaped config; load it with --trust-remote-code",
    ):
        load_model(path)


def test_dream_logits_are_aligned_and_sampling_matches_the_unshifted_twin(tmp_path):
    tokenizer = dream_tokenizer()
    dream = load_model(remote_checkpoint(tmp_path, tokenizer, "dream", shifted=True), trust_remote_code=True, family="dream")
    twin = load_model(
        remote_checkpoint(tmp_path, tokenizer, "twin", shifted=False, mask_token_id=2), trust_remote_code=True, family="llada"
    )
    # Row 1 is unpadded, so the twin (plain positions) and Dream (positions from the mask) agree on it;
    # aligned position 0 has no earlier hidden state in Dream and is left out.
    ids, mask = dream.encode_chat(["hello world", "You are a helpful assistant."])
    assert torch.allclose(dream.logits(ids, mask)[1, 1:], twin.logits(ids, mask)[1, 1:])
    ids, mask = dream.encode_chat(["You are a helpful assistant."])
    settings = dict(gen_length=8, steps=8, block_length=4)
    shifted_out = generate(dream.module, ids, mask, config=dream.sampler_config(**settings))
    twin_out = generate(twin.module, ids, mask, config=twin.sampler_config(**settings))
    assert torch.equal(shifted_out.sequences, twin_out.sequences)


def test_bidirectional_checkpoint_round_trip(tmp_path, tokenizer):
    lm = tiny_llama(tokenizer, seed=4)
    loaded = load_model(save_model(lm, tmp_path / "tiny"))
    ids, mask = lm.encode_chat(["hello world", "what is the cat"])
    assert loaded.family == "bidirectional" and loaded.mask_id == tokenizer.mask_token_id
    assert torch.equal(lm.logits(ids, mask), loaded.logits(ids, mask))


def test_attention_is_bidirectional(tokenizer):
    lm = tiny_llama(tokenizer, seed=2)
    ids = torch.tensor([[1, 6, 10, 11, 12, 4, 7]])
    changed = ids.clone()
    changed[0, -1] = 20  # change the last token: a causal model's first positions would not notice
    assert not torch.allclose(lm.logits(ids)[0, 0], lm.logits(changed)[0, 0])


def test_bad_checkpoints_get_one_line_errors(tmp_path, tokenizer):
    with pytest.raises(MosaError, match="no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(MosaError, match="not a supported family"):
        load_model(tmp_path)
    lm = tiny_llama(tokenizer)
    broken = build_word_tokenizer(
        ["x"], special_tokens={"eos_token": "<e>", "pad_token": "<m>", "mask_token": "<m>", "unk_token": "<u>"}
    )
    lm.module.config.mask_token_id = None
    with pytest.raises(MosaError, match="pad id equals mask id"):
        wrap_model(lm.module, broken, "bidirectional")
