"""Sampler speed: mosa's `generate` against the plain reference loop, same model, same settings.

    python benchmarks/bench_sampler.py            # both model shapes, the issue's settings
    python benchmarks/bench_sampler.py --quick    # a smaller run to check the script

Both samplers run in this one process on the same randomly initialised bidirectional Llama and
the same prompts; the script checks that their outputs are identical token for token, then prints
tokens/s for each and the ratio. Shapes: "head-heavy" (hidden 256, 4 layers) and "body-heavy"
(hidden 512, 8 layers), both with a 32,000-token vocabulary; the gain comes from computing the
output head and softmax only where a token can be committed, so it shrinks as the body grows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mosa.models.wrappers import BidirectionalLM  # noqa: E402
from mosa.sampling import SamplerConfig, generate  # noqa: E402
from tests.sampling.reference_llada import reference_generate  # noqa: E402

SHAPES = {"head-heavy": dict(hidden_size=256, num_hidden_layers=4), "body-heavy": dict(hidden_size=512, num_hidden_layers=8)}
VOCAB, MASK_ID = 32000, 31999


def build(shape: dict) -> BidirectionalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, intermediate_size=4 * shape["hidden_size"], num_attention_heads=8, num_key_value_heads=8,
        max_position_embeddings=512, tie_word_embeddings=False, attn_implementation="sdpa", **shape,
    )
    return BidirectionalLM(LlamaForCausalLM(config)).eval()


def prompts(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(16, 33, (batch,), generator=generator)
    width = int(lengths.max())
    ids = torch.zeros((batch, width), dtype=torch.long)  # id 0 pads (it is not the mask id)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for row, length in enumerate(lengths.tolist()):
        ids[row, width - length :] = torch.randint(1, VOCAB - 1, (length,), generator=generator)
        mask[row, width - length :] = 1
    return ids, mask


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="gen_length 32, steps 32, batch 2, head-heavy only")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen_length, steps, block_length, batch = (32, 32, 16, 2) if args.quick else (128, 128, 32, 8)
    shapes = {"head-heavy": SHAPES["head-heavy"]} if args.quick else SHAPES
    settings = dict(gen_length=gen_length, steps=steps, block_length=block_length, mask_id=MASK_ID)
    print(f"gen_length={gen_length} steps={steps} block_length={block_length} batch={batch} "
          f"threads={args.threads} torch={torch.__version__}")
    print(f"{'model':<11} {'params':>7} {'reference tok/s':>16} {'mosa tok/s':>11} {'speed-up':>9}  identical")
    for name, shape in shapes.items():
        model = build(shape)
        ids, mask = prompts(batch)
        with torch.no_grad():
            model(ids, attention_mask=mask)  # warm-up
        expected, t_ref = timed(lambda: reference_generate(model, ids, mask, **settings))
        ours, t_mosa = timed(lambda: generate(model, ids, mask, config=SamplerConfig(**settings)))
        identical = torch.equal(ours.sequences, expected)
        tokens = batch * gen_length
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:<11} {params:>6.1f}M {tokens / t_ref:>16.1f} {tokens / t_mosa:>11.1f} {t_ref / t_mosa:>8.2f}x  {identical}")
        if not identical:
            raise SystemExit("outputs differ: the fast path is not exact on this model")


if __name__ == "__main__":
    main()
