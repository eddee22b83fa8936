"""The real upstream LLaDA and Dream model code (../shared/upstream), as test fixtures.

Tiny random-weight models are built with the upstream classes themselves and saved as the
checkpoints a user downloads (safetensors, sharded with an index, config.json with auto_map, the
.py files, a tokenizer with the real special ids), so that mosa is checked against the real thing.
The upstream files are imported from ../shared/upstream, never copied into the project.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import torch

UPSTREAM = Path(__file__).resolve().parents[1].parent / "shared" / "upstream"

# The real special ids (../shared/upstream/PROVENANCE.md); the words of the tiny tokenizers take ids from 0.
LLADA_SPECIALS = {
    "<|startoftext|>": 126080,
    "<|endoftext|>": 126081,
    "<|mdm_mask|>": 126336,
    "<|start_header_id|>": 126346,
    "<|end_header_id|>": 126347,
    "<|eot_id|>": 126348,
}
DREAM_SPECIALS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|mask|>": 151666}
WORDS = "hello world you are a helpful assistant user system how do magnets work write haiku about rain the next step is".split()


def import_upstream(folder: str, name: str):
    """Import ../shared/upstream/<folder>/<name>.py as a module of a package `upstream_<folder>`
    (Dream's files import each other relatively). The upstream files register their classes with
    transformers' Auto classes when imported; that is undone, so that no later test loads a
    checkpoint differently because a fixture was imported first."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    package = f"upstream_{folder}"
    if package not in sys.modules:
        module = types.ModuleType(package)
        module.__path__ = [str(UPSTREAM / folder)]
        sys.modules[package] = module
    qualified = f"{package}.{name}"
    if qualified not in sys.modules:
        registries = (CONFIG_MAPPING._extra_content, MODEL_MAPPING._extra_content)
        saved = [dict(registry) for registry in registries]
        spec = importlib.util.spec_from_file_location(qualified, UPSTREAM / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        try:
            spec.loader.exec_module(module)
        finally:
            for registry, before in zip(registries, saved):
                registry.clear()
                registry.update(before)
    return sys.modules[qualified]


def tiny_config(family: str) -> dict:
    """config.tiny.json: the real checkpoint's keys and values, sizes made tiny."""
    return json.loads((UPSTREAM / family / "config.tiny.json").read_text())


def _spread_weights(model: torch.nn.Module, seed: int, scale: float) -> None:
    """Large random weights, so that logits are spread out and confidences rarely tie by accident."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


def upstream_llada(seed: int = 0, scale: float = 0.1, **overrides):
    """LLaDAModelLM from the upstream code, tiny, random weights, fp32, eval mode."""
    configuration = import_upstream("llada", "configuration_llada")
    modeling = import_upstream("llada", "modeling_llada")
    config = configuration.LLaDAConfig(**{**tiny_config("llada"), **overrides})
    config.use_cache = False  # transformers 5 drops generation keys from configs; its forward reads it
    torch.manual_seed(seed)
    model = modeling.LLaDAModelLM(config, init_params=True)
    _spread_weights(model, seed, scale)
    return model.eval()


def upstream_dream(seed: int = 0, scale: float = 0.1, **overrides):
    """DreamModel from the upstream code, tiny, random weights, fp32, eval mode."""
    from mosa.models.compat import default_rope_registered  # transformers 5 lacks the 'default' RoPE Dream asks for

    configuration = import_upstream("dream", "configuration_dream")
    modeling = import_upstream("dream", "modeling_dream")
    config = configuration.DreamConfig(**{**tiny_config("dream"), **overrides})
    config.use_cache = False
    torch.manual_seed(seed)
    with default_rope_registered():
        model = modeling.DreamModel(config)
    _spread_weights(model, seed, scale)
    return model.eval()


def word_tokenizer(specials: dict[str, int], *, bos: str | None, eos: str, mask: str, chat_template: str):
    """A word-level tokenizer whose special tokens sit at the real checkpoint's ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, **{word: i + 1 for i, word in enumerate(WORDS)}, **specials}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    core.add_special_tokens([AddedToken(token, special=True) for token in specials])
    named = {"unk_token": "<unk>", "eos_token": eos, "pad_token": eos, "mask_token": mask}
    if bos:
        named["bos_token"] = bos
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **named)
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in specials if t not in named.values()]})
    tokenizer.chat_template = chat_template
    tokenizer.padding_side = "left"
    return tokenizer


def llada_tokenizer():
    from mosa.models.chat_templates import LLADA_TEMPLATE

    return word_tokenizer(
        LLADA_SPECIALS, bos="<|startoftext|>", eos="<|endoftext|>", mask="<|mdm_mask|>", chat_template=LLADA_TEMPLATE
    )


def dream_tokenizer():
    from mosa.models.chat_templates import DREAM_TEMPLATE

    return word_tokenizer(DREAM_SPECIALS, bos=None, eos="<|endoftext|>", mask="<|mask|>", chat_template=DREAM_TEMPLATE)


def save_upstream_checkpoint(model, family: str, path: Path, *, max_shard_size: str | None = "20MB", dtype=None) -> Path:
    """Write `model` as its hub checkpoint: safetensors (sharded with model.safetensors.index.json
    unless max_shard_size is None), the tiny config.json with auto_map, the upstream .py files and a
    tokenizer with the real special ids."""
    from huggingface_hub import save_torch_state_dict

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().to(dtype or tensor.dtype).contiguous() for name, tensor in model.state_dict().items()}
    save_torch_state_dict(state, path, max_shard_size=max_shard_size or "100GB")
    config = tiny_config(family)
    if dtype is not None:
        config["torch_dtype"] = str(dtype).removeprefix("torch.")
    (path / "config.json").write_text(json.dumps(config, indent=2))
    for source in (UPSTREAM / family).glob("*.py"):
        shutil.copy(source, path / source.name)
    if family == "dream":
        shutil.copy(UPSTREAM / "dream" / "generation_config.tiny.json", path / "generation_config.json")
    (llada_tokenizer() if family == "llada" else dream_tokenizer()).save_pretrained(path)
    return path
