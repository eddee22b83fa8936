"""The demo model is built once, saved as a Hugging Face checkpoint, and reused from the cache."""

import torch

from mosa.organism.demo_model import DemoModelConfig, arithmetic_pairs, demo_model, split_pairs
from mosa.organism.train import SFTConfig


def test_built_once_then_loaded_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSA_CACHE_DIR", str(tmp_path))
    config = DemoModelConfig(hidden_size=16, num_layers=1, train=SFTConfig(steps=3, batch_size=4, gen_length=16))
    built, train, held_out = demo_model(config, progress=False)
    [checkpoint] = tmp_path.iterdir()
    assert (checkpoint / "config.json").is_file() and not checkpoint.name.endswith(".partial")
    loaded, _, _ = demo_model(config, progress=False)
    ids, mask = built.encode_chat([prompt for prompt, _ in held_out[:3]])
    assert torch.equal(built.logits(ids, mask), loaded.logits(ids, mask))
    assert not set(train) & set(held_out) and len(train) + len(held_out) == len(arithmetic_pairs())


def test_split_is_deterministic():
    assert split_pairs(arithmetic_pairs(), 0.2, seed=3) == split_pairs(arithmetic_pairs(), 0.2, seed=3)
