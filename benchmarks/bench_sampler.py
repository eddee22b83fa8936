"""Sampler speed: mosa's `generate` against the plain reference loop, same model, same settings.

    python benchmarks/bench_sampler.py                     # every shape below
    python benchmarks/bench_sampler.py --shape llada-shaped
    python benchmarks/bench_sampler.py --quick             # a smaller run to check the script

Both samplers run in this one process on the same randomly initialised model and the same prompts;
the script checks that their outputs are identical token for token, then prints tokens/s for each,
their ratio, and the tokens/s of the forward passes alone: the model body called once per step on
the whole canvas with the output head on a single position, a lower bound for any exact decoder
of one token per step. mosa's distance to it is the output head on the block plus its own work.

Shapes:
  head-heavy     bidirectional Llama, hidden 256, 4 layers, 32,000-token vocabulary
  body-heavy     bidirectional Llama, hidden 512, 8 layers, 32,000-token vocabulary
  llada-shaped   mosa's native LLaDA module (LlamaForCausalLM, absolute positions, fp32 RoPE)
                 with LLaDA-8B-Instruct's vocabulary (126,464), head size 128 and MLP ratio 3,
                 at reduced width (512) and depth (2), gen_length 256, steps 256, blocks of 32.
The gain comes from computing the output head and softmax only where a token can be committed, so
it shrinks as the body grows: in LLaDA-8B (4,096 wide, 32 layers) the head is about 6% of a
forward pass, far less than in any shape a CPU can run here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gpu_check import LLADA_8B  # noqa: E402
from mosa.models.native import random_native  # noqa: E402
from mosa.models.wrappers import BidirectionalLM  # noqa: E402
from mosa.sampling import SamplerConfig, generate  # noqa: E402
from tests.sampling.reference_llada import reference_generate  # noqa: E402

# LLaDA-8B-Instruct's config.json with the width and depth reduced.
LLADA_SHAPED = {**LLADA_8B, "d_model": 512, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4, "mlp_hidden_size": 1536}
# name: (model settings, sampler settings gen_length / steps / block_length, batch)
SHAPES = {
    "head-heavy": (dict(hidden_size=256, num_hidden_layers=4), (128, 128, 32), 8),
    "body-heavy": (dict(hidden_size=512, num_hidden_layers=8), (128, 128, 32), 8),
    "llada-shaped": (LLADA_SHAPED, (256, 256, 32), 2),
}


def build(name: str) -> tuple[torch.nn.Module, int, int]:
    """The model, its vocabulary size and its mask id."""
    torch.manual_seed(0)
    shape = SHAPES[name][0]
    if name == "llada-shaped":
        return random_native("llada", shape, dtype=torch.float32), shape["vocab_size"], shape["mask_token_id"]
    config = LlamaConfig(
        vocab_size=32000,
        intermediate_size=4 * shape["hidden_size"],
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
        **shape,
    )
    return BidirectionalLM(LlamaForCausalLM(config)).eval(), 32000, 31999


def prompts(batch: int, vocab: int, mask_id: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(16, 33, (batch,), generator=generator)
    width = int(lengths.max())
    ids = torch.zeros((batch, width), dtype=torch.long)  # id 0 pads (it is not the mask id)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for row, length in enumerate(lengths.tolist()):
        row_ids = torch.randint(1, vocab - 1, (length,), generator=generator)
        ids[row, width - length :] = torch.where(row_ids == mask_id, 1, row_ids)
        mask[row, width - length :] = 1
    return ids, mask


def forward_floor(model, ids, mask, gen_length: int, steps: int, mask_id: int) -> None:
    """The floor of exact decoding: `steps` passes of the body over the full canvas, the output head
    on one position only."""
    canvas = torch.cat([ids, torch.full((ids.shape[0], gen_length), mask_id)], dim=1)
    full_mask = torch.cat([mask, torch.ones((ids.shape[0], gen_length), dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        for _ in range(steps):
            model(canvas, attention_mask=full_mask, logits_to_keep=1)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="run only these shapes (repeatable)")
    parser.add_argument("--quick", action="store_true", help="gen_length 32, steps 32, blocks of 16, batch 2")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.shape or (["head-heavy"] if args.quick else list(SHAPES))
    print(f"threads={args.threads} torch={torch.__version__}")
    print(
        f"{'model':<13} {'params':>7} {'gen/steps/block x batch':>24} {'reference tok/s':>16} {'mosa tok/s':>11} "
        f"{'speed-up':>9} {'forwards alone tok/s':>21} {'mosa/forwards':>14}  identical"
    )
    results = []
    for name in names:
        model, vocab, mask_id = build(name)
        (gen_length, steps, block_length), batch = ((32, 32, 16), 2) if args.quick else SHAPES[name][1:]
        settings = dict(gen_length=gen_length, steps=steps, block_length=block_length, mask_id=mask_id)
        ids, mask = prompts(batch, vocab, mask_id)
        with torch.no_grad():
            model(ids, attention_mask=mask)  # warm-up
        expected, t_ref = timed(lambda: reference_generate(model, ids, mask, **settings))  # noqa: B023 (called at once)
        ours, t_mosa = timed(lambda: generate(model, ids, mask, config=SamplerConfig(**settings)))  # noqa: B023 (called at once)
        _, t_floor = timed(lambda: forward_floor(model, ids, mask, gen_length, steps, mask_id))  # noqa: B023 (called at once)
        identical = torch.equal(ours.sequences, expected)
        tokens = batch * gen_length
        params = sum(p.numel() for p in model.parameters()) / 1e6
        row = dict(
            model=name,
            params_m=round(params, 1),
            gen_length=gen_length,
            steps=steps,
            block_length=block_length,
            batch=batch,
            reference_tok_s=tokens / t_ref,
            mosa_tok_s=tokens / t_mosa,
            forwards_tok_s=tokens / t_floor,
            speed_up=t_ref / t_mosa,
            mosa_over_forwards=t_mosa / t_floor,
            identical=identical,
        )
        results.append(row)
        print(
            f"{name:<13} {params:>6.1f}M {f'{gen_length}/{steps}/{block_length} x {batch}':>24} {row['reference_tok_s']:>16.1f} "
            f"{row['mosa_tok_s']:>11.1f} {row['speed_up']:>8.2f}x {row['forwards_tok_s']:>21.1f} "
            f"{row['mosa_over_forwards']:>13.2f}x  {identical}"
        )
        if not identical:
            raise SystemExit("outputs differ: the fast path is not exact on this model")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
