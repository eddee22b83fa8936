"""The small model that `mosa demo` samples from: a bidirectional Llama trained on arithmetic facts.

It stands in until the model organism (an aligned-yet-jailbreakable chat dLLM) exists. It is built
once, saved as a Hugging Face checkpoint under the cache, and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mosa.models import DiffusionLM, load_model
from mosa.models.build import build_bidirectional_llama, build_word_tokenizer, save_model
from mosa.organism.train import SFTConfig, sft_train


@dataclass
class DemoModelConfig:
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    train: SFTConfig = field(default_factory=lambda: SFTConfig(steps=1500, batch_size=32, lr=1e-3, gen_length=16))
    held_out_fraction: float = 0.2
    seed: int = 0
    recipe: int = 1  # bump when the construction changes, so cached builds are not reused

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def arithmetic_pairs() -> list[tuple[str, str]]:
    """'what is 3 plus 4 ?' -> '3 plus 4 is 7 .', for single digits, addition and subtraction."""
    pairs = []
    for a in range(10):
        for b in range(10):
            pairs.append((f"what is {a} plus {b} ?", f"{a} plus {b} is {a + b} ."))
            if a >= b:
                pairs.append((f"what is {a} minus {b} ?", f"{a} minus {b} is {a - b} ."))
    return pairs


def split_pairs(pairs, held_out_fraction: float, seed: int):
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    cut = int(len(shuffled) * held_out_fraction)
    return shuffled[cut:], shuffled[:cut]


def cache_dir() -> Path:
    return Path(os.environ.get("MOSA_CACHE_DIR", Path.home() / ".cache" / "mosa"))


def demo_model(config: DemoModelConfig | None = None, progress: bool = True) -> tuple[DiffusionLM, list, list]:
    """Load the demo model from the cache, or build and train it. Returns (model, train, held out)."""
    config = config or DemoModelConfig()
    train, held_out = split_pairs(arithmetic_pairs(), config.held_out_fraction, config.seed)
    path = cache_dir() / f"demo-model-{config.key()}"
    if (path / "config.json").is_file():
        return load_model(path), train, held_out

    words = [str(n) for n in range(19)] + "what is plus minus ? .".split()
    tokenizer = build_word_tokenizer(words)
    lm = build_bidirectional_llama(
        tokenizer, hidden_size=config.hidden_size, num_layers=config.num_layers, num_heads=config.num_heads, seed=config.seed
    )
    sft_train(lm, train, config.train, progress=progress)
    temporary = path.with_name(path.name + ".partial")
    save_model(lm, temporary)
    (temporary / "mosa_demo_config.json").write_text(json.dumps(asdict(config), indent=2))
    temporary.rename(path)  # a killed build never leaves a half-written model under the real key
    return lm, train, held_out
