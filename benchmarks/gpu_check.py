"""The GPU check: LLaDA-8B-Instruct's true shape, random weights, one H100/H200, under 8 minutes.

    python benchmarks/gpu_check.py [--json gpu_check.json]
    python benchmarks/gpu_check.py --smoke     # the same code on a tiny shape on the CPU (about a minute here)

No weights are needed: mosa's native LLaDA module (transformers' Llama, full attention, fp32 RoPE)
is built at LLaDA-8B-Instruct's sizes (../shared/upstream/PROVENANCE.md) with random bf16 weights.
It prints
  1. bf16 token parity of mosa's sampler with the reference loop (tests/sampling/reference_llada.py)
     on the same model: with the output-head fast path and without it;
  2. sampler tokens/s at gen_length 256, steps 256, blocks of 32, and the model FLOP utilisation
     (useful matmul FLOPs of the forward passes / elapsed time / the GPU's dense bf16 peak);
  3. the fast approximate decodings' tokens/s at the same settings (mosa.sampling.fast: threshold 0.9,
     prefix-cache, dual-cache), with their forward passes and the time of one pass. Random weights
     are confident nowhere, so the threshold rule commits one token a step here and its figure is the
     per-step cost; a trained model's pass count (benchmarks/bench_decoding.py) times the time per
     pass gives its tokens/s;
  4. the time of one MOSA step and the peak memory for the paper-llada8b preset's batch (4 prompts,
     response length 256, LoRA r=32 on q/k/v/o, gradient checkpointing, bf16).
Random weights give near-uniform logits, so confidences tie often in bf16: a hard case for parity.
Prompts are random token ids (the MOSA step renders word prompts with a word-level tokenizer that
has LLaDA's special ids; real BPE prompts are about a quarter longer in tokens).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mosa.models.native import random_native  # noqa: E402
from mosa.sampling import SamplerConfig, generate  # noqa: E402
from tests.sampling.reference_llada import WithoutLogitsToKeep, reference_generate  # noqa: E402

LLADA_8B = {
    "model_type": "llada",
    "d_model": 4096,
    "n_layers": 32,
    "n_heads": 32,
    "n_kv_heads": 32,
    "mlp_hidden_size": 12288,
    "vocab_size": 126464,
    "embedding_size": 126464,
    "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5,
    "rope_full_precision": True,
    "max_sequence_length": 4096,
    "weight_tying": False,
    "mask_token_id": 126336,
    "eos_token_id": 126081,
    "pad_token_id": 126081,
}
MASK, EOS, EOT, BOS = 126336, 126081, 126348, 126080
SMOKE_SHAPE = {**LLADA_8B, "d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4, "mlp_hidden_size": 192}
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense, SXM; --peak-tflops overrides


def random_prompts(batch: int, length: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded random prompts of lengths in [length/2, length]."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=generator)
    ids = torch.full((batch, length), EOS, dtype=torch.long)
    mask = torch.zeros((batch, length), dtype=torch.long)
    for row, n in enumerate(lengths.tolist()):
        ids[row, length - n :] = torch.randint(0, 126000, (n,), generator=generator)
        mask[row, length - n :] = 1
    return ids.to(device), mask.to(device)


def parity(model, device, runs: int) -> dict:
    settings = dict(gen_length=64, steps=64, block_length=32, mask_id=MASK)
    results = {"fast_path": 0, "full_logits": 0, "runs": runs}
    for seed in range(runs):
        ids, mask = random_prompts(2, 32, seed, device)
        options = dict(cfg_scale=0.5 if seed % 2 else 0.0, confidence_eos_eot_inf=seed % 3 == 1, eos_id=EOS, eot_id=EOT)
        expected = reference_generate(model, ids, mask, **settings, **options)
        config = SamplerConfig(**settings, **options)
        results["fast_path"] += torch.equal(generate(model, ids, mask, config=config).sequences, expected)
        results["full_logits"] += torch.equal(generate(WithoutLogitsToKeep(model), ids, mask, config=config).sequences, expected)
    return results


def forward_flops(params_body: int, d_model: int, vocab: int, layers: int, batch: int, length: int, head_rows: int) -> float:
    """Matmul FLOPs of one forward pass: 2 x body parameters per token, attention's QK^T and AV
    (4 x length^2 x d per layer and row), the output head on `head_rows` positions per row."""
    return batch * (2 * params_body * length + 4 * layers * length**2 * d_model + 2 * d_model * vocab * head_rows)


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def sampler_speed(model, shape: dict, device, batch: int, peak_tflops: float, gen_length: int) -> dict:
    steps, block_length, prompt_length = gen_length, 32, 64
    ids, mask = random_prompts(batch, prompt_length, 0, device)
    config = SamplerConfig(gen_length=gen_length, steps=steps, block_length=block_length, mask_id=MASK)
    generate(model, ids, mask, config=SamplerConfig(gen_length=32, steps=4, block_length=32, mask_id=MASK))  # warm-up
    synchronize(device)
    start = time.perf_counter()
    generate(model, ids, mask, config=config)
    synchronize(device)
    elapsed = time.perf_counter() - start
    body = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name and "lm_head" not in name)
    length = prompt_length + gen_length
    # mosa's head runs on the masked part of the current block: block_length rows at most per step.
    flops = steps * forward_flops(body, shape["d_model"], shape["vocab_size"], shape["n_layers"], batch, length, block_length)
    return {
        "batch": batch,
        "tokens_per_s": batch * gen_length / elapsed,
        "seconds": elapsed,
        "achieved_tflops": flops / elapsed / 1e12,
        "mfu": flops / elapsed / 1e12 / peak_tflops,
    }


DECODINGS = {
    "threshold 0.9": {"decoding": "threshold", "threshold": 0.9},
    "prefix-cache": {"decoding": "prefix-cache"},
    "dual-cache": {"decoding": "dual-cache"},
}


def decoding_speed(model, device, batch: int, gen_length: int) -> dict:
    """tokens/s, forward passes and ms per pass of each fast decoding, as sampler_speed runs exact."""
    ids, mask = random_prompts(batch, 64, 0, device)
    results = {}
    for name, settings in DECODINGS.items():
        config = SamplerConfig(gen_length=gen_length, steps=gen_length, block_length=32, mask_id=MASK, **settings)
        synchronize(device)
        start = time.perf_counter()
        out = generate(model, ids, mask, config=config)
        synchronize(device)
        elapsed = time.perf_counter() - start
        results[name] = {
            "tokens_per_s": batch * gen_length / elapsed,
            "seconds": elapsed,
            "forward_passes": out.forward_passes,
            "ms_per_pass": 1000 * elapsed / out.forward_passes,
        }
    return results


def mosa_step(model, device, response_length: int) -> dict:
    """Time and peak memory of MOSA steps with the paper preset's batch (LoRA, checkpointing, bf16)."""
    from mosa.align.trainer import MosaConfig, train_mosa
    from mosa.models import wrap_model
    from tests.upstream import llada_tokenizer  # LLaDA's special ids on a word-level vocabulary

    lm = wrap_model(model, llada_tokenizer(), "llada")
    words = "explain in detail how one would go about doing the following task step by step please".split()
    prompts = [" ".join(words[i % 7 :] + words[: i % 7]) for i in range(64)]
    config = dict(
        response_length=response_length,
        window=(20, 60),
        beta=0.05,
        lr=5e-5,
        max_grad_norm=0.01,
        batch_size=4,
        lora_r=32,
        lora_alpha=64,
        target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
        gradient_checkpointing=True,
        safe_sentences=("the next step is",),
        harmful_sentences=("the next step is",),
        save_every=1000,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as folder:
        metrics = train_mosa(lm, prompts, MosaConfig(**config, max_steps=6), folder, progress=False)
    rates = sorted(record["prompts_per_s"] for record in metrics[1:])  # the first step warms up
    elapsed = config["batch_size"] / rates[len(rates) // 2]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"seconds_per_step": elapsed, "peak_memory_gib": peak, "batch": 4, "response_length": response_length}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parity-runs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8, help="sampler batch for tokens/s")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak (default: from its name)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--smoke", action="store_true", help="a tiny shape on the CPU: checks the script, measures nothing")
    args = parser.parse_args()
    if args.smoke:
        device, name, shape, peak, gen_length, args.parity_runs, args.batch = (
            torch.device("cpu"),
            "CPU (smoke)",
            SMOKE_SHAPE,
            1.0,
            64,  # two blocks of 32: the caches need more than one
            2,
            2,
        )
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; run it on a GPU machine (or --smoke to check the script)")
    else:
        device, name, shape, gen_length = torch.device("cuda"), torch.cuda.get_device_name(), LLADA_8B, 256
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        if peak is None:
            raise SystemExit(f"gpu_check: unknown peak for {name}; pass --peak-tflops")
    report = SimpleNamespace(device=name, torch=torch.__version__, date=time.strftime("%Y-%m-%d"))
    start = time.perf_counter()
    model = random_native("llada", shape, dtype=torch.bfloat16, device=device)
    report.build_seconds = time.perf_counter() - start
    report.params_b = sum(p.numel() for p in model.parameters()) / 1e9
    print(
        f"{name}: LLaDA-8B-Instruct's config at d_model {shape['d_model']}, {shape['n_layers']} layers, {report.params_b:.2f}B parameters, built in {report.build_seconds:.0f} s",
        flush=True,
    )
    report.parity = parity(model, device, args.parity_runs)
    print(
        f"bf16 parity with the reference loop: fast path {report.parity['fast_path']}/{args.parity_runs}, "
        f"full logits {report.parity['full_logits']}/{args.parity_runs}",
        flush=True,
    )
    report.sampler = sampler_speed(model, shape, device, args.batch, peak, gen_length)
    s = report.sampler
    print(
        f"sampler: {s['tokens_per_s']:.1f} tokens/s (batch {s['batch']}, {gen_length}/{gen_length}/32), {s['achieved_tflops']:.0f} TFLOP/s, "
        f"MFU {100 * s['mfu']:.1f}% of {peak:.0f}",
        flush=True,
    )
    report.decodings = decoding_speed(model, device, args.batch, gen_length)
    exact_ms = 1000 * s["seconds"] / gen_length
    print(
        f"decodings (batch {args.batch}, {gen_length} tokens, blocks of 32): exact {s['tokens_per_s']:.1f} tokens/s, {exact_ms:.1f} ms/pass",
        flush=True,
    )
    for name, figures in report.decodings.items():
        print(
            f"  {name}: {figures['tokens_per_s']:.1f} tokens/s, {figures['forward_passes']} passes, {figures['ms_per_pass']:.1f} ms/pass "
            f"({exact_ms / figures['ms_per_pass']:.2f}x exact's pass)",
            flush=True,
        )
    report.mosa = mosa_step(model, device, max(gen_length, 64))
    print(
        f"MOSA step (batch 4, response {report.mosa['response_length']}, LoRA r32, checkpointing): {report.mosa['seconds_per_step']:.2f} s, "
        f"peak memory {report.mosa['peak_memory_gib']:.1f} GiB",
        flush=True,
    )
    report.total_seconds = time.perf_counter() - start
    print(f"total {report.total_seconds:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(vars(report), indent=2))


if __name__ == "__main__":
    main()
