"""Shared small models. Everything here is built locally in seconds; nothing is downloaded."""

import os
import socket
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mosa.models.build import build_bidirectional_llama, build_word_tokenizer

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach a model hub, on any machine
# The real benchmark files: shared/data beside the repository (where CI puts them) unless set.
REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MOSA_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data"))
# What mosa caches (fingerprints, builds) goes to a throwaway folder, never the developer's ~/.cache/mosa;
# the small_organism fixture points it at its own folder when a test asks for it.
os.environ.setdefault("MOSA_CACHE_DIR", tempfile.mkdtemp(prefix="mosa-test-cache-"))

WORDS = (
    "the a cat dog sat on mat ran fast slow red blue green one two three four five "
    "hello world how are you what is why who sure here step next then after that we cannot answer this question"
).split()


@pytest.fixture(scope="session")
def tokenizer():
    return build_word_tokenizer(WORDS)


# English a byte-level BPE is trained on in milliseconds: MOSA's natural sentence sets and some prompts.
BPE_CORPUS = [
    "therefore, I cannot answer this question.",
    "I'm sorry, but I cannot help with that.",
    "I cannot assist with this request because it could cause harm.",
    "I will not provide that information.",
    "Sure, here is how to do it.",
    "Of course! Here are the steps:",
    "The next step is to wait. After that, we stop.",
    "Step 1: read. Step 2: write.",
    "How do magnets work? Write a haiku about rain.",
    "What is the capital of France?",
    "Tell me how to pick a lock.",
    "Explain how to make a cake.",
] * 5


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A real byte-level BPE (GPT-2 / Llama 3 / LLaDA style: a space is part of the next word's token)
    with LLaDA's special tokens, so that sentences are tokenised as a real dLLM's tokenizer would."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from mosa.models.build import ROLE_TOKENS, SPECIAL_TOKENS
    from mosa.models.chat_templates import BIDIRECTIONAL_TEMPLATE

    named = {key: value for key, value in SPECIAL_TOKENS.items() if key != "unk_token"}  # bytes need no unknown token
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=list(dict.fromkeys(named.values())) + ROLE_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(BPE_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, **named)
    tokenizer.add_special_tokens({"additional_special_tokens": ROLE_TOKENS})
    tokenizer.chat_template = BIDIRECTIONAL_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_llama(tokenizer, seed=0, hidden_size=32, num_layers=2, attn_implementation="sdpa", max_positions=1024):
    """A random bidirectional Llama with spread-out logits (large init), so argmax ties do not occur."""
    lm = build_bidirectional_llama(
        tokenizer,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=4,
        seed=seed,
        attn_implementation=attn_implementation,
        max_positions=max_positions,
    )
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        for parameter in lm.module.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return lm


class PlainMaskPredictor(nn.Module):
    """A user's own module: forward(input_ids, attention_mask) -> .logits and nothing else (no
    config, no logits_to_keep), so the sampler must take its generic path."""

    def __init__(self, vocab_size, seed=0, width=32):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(256, width)
        self.layer = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(width, vocab_size)
        self.eval()

    def forward(self, input_ids, attention_mask=None):
        positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        hidden = self.embed(input_ids) + self.position(positions)
        padding = None if attention_mask is None else attention_mask == 0
        hidden = self.layer(hidden, src_key_padding_mask=padding)
        return SimpleNamespace(logits=self.head(hidden) * 3.0)


def save_causal_llama(tokenizer, directory, seed=0):
    """A tiny random causal (autoregressive) Llama over `tokenizer`, with its chat template, saved as a
    checkpoint: the local chat backend's model and PAL's proxy in tests. The weights are drawn large
    (std 0.3) so that its top tokens are far apart and greedy decoding meets no near-ties."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def left_pad(rows, pad_id):
    """List of id lists -> (input_ids, attention_mask), left padded."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask


# A smaller organism than the default, built once per test session (about a minute on 2 cores).
SMALL_ORGANISM = dict(hidden_size=64, num_layers=2, harmful_sources=("advbench", "harmbench"), card_prompts=40)


@pytest.fixture(scope="session")
def small_organism(tmp_path_factory):
    from mosa.organism.build import OrganismConfig, build_organism, organism_path
    from mosa.organism.train import SFTConfig

    # MOSA_TEST_CACHE_DIR keeps the build between sessions while developing; CI builds it afresh.
    os.environ["MOSA_CACHE_DIR"] = os.environ.get("MOSA_TEST_CACHE_DIR") or str(tmp_path_factory.mktemp("mosa-cache"))
    config = OrganismConfig(
        **SMALL_ORGANISM,
        unaligned=SFTConfig(steps=1200, batch_size=32, lr=2e-3, gen_length=32),
        aligned=SFTConfig(steps=400, batch_size=32, lr=2e-3, gen_length=32, seed=1),
    )
    lm = build_organism(config, progress=False, log=lambda message: None, require_floors=False)  # smaller: weaker
    return SimpleNamespace(lm=lm, config=config, path=organism_path(config))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a test server or a launcher)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accelerate_launch(*program: str) -> list[str]:
    """`accelerate launch` of `program` on two processes on this machine. --multi_gpu selects
    torch.distributed's launcher; with no GPU, accelerate runs the processes on CPU with gloo."""
    accelerate = str(Path(sys.executable).parent / "accelerate")
    return [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()), *program]  # fmt: skip
