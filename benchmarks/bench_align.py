"""MOSA training throughput and memory on the organism, and what the paper's figures imply.

    python benchmarks/bench_align.py [--steps 40] [--model PATH]

Runs the organism preset's settings for a fixed number of steps on one organism (the default
one, built or reused from the cache, unless --model is given), with LoRA and with full
fine-tuning side by side, and prints prompts/s and the parameter memory each holds. LoRA's
reference forward pass uses the base weights with the adapter switched off, so its parameter
memory is base + adapter, never two copies of the base (the script checks it by counting distinct
parameter storages); full fine-tuning needs a frozen copy of the weights as its reference.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAPER_PROMPTS, PAPER_MINUTES, PAPER_GPUS = 3000, 12, "2 x A100-40GB"


def parameter_bytes(modules) -> tuple[int, int]:
    """(bytes of distinct parameter storages, bytes of trainable parameters) across modules."""
    seen, total, trainable = set(), 0, 0
    for module in modules:
        for parameter in module.parameters():
            size = parameter.numel() * parameter.element_size()
            trainable += size if parameter.requires_grad else 0
            if parameter.untyped_storage().data_ptr() not in seen:
                seen.add(parameter.untyped_storage().data_ptr())
                total += size
    return total, trainable


def run(mode: str, path: Path, prompts: list[str], preset: dict, steps: int) -> dict:
    from mosa.align import trainer
    from mosa.align.settings import mosa_config
    from mosa.models import load_model

    config = mosa_config({**preset, "finetune": mode, "max_steps": steps, "save_every": steps, "monitor_every": 0})
    lm = load_model(path)
    base_bytes, _ = parameter_bytes([lm.module])
    references = []  # whatever the trainer builds as its reference, so that its memory is counted too
    make_reference = trainer.make_reference
    trainer.make_reference = lambda *a: references.append(make_reference(*a)) or references[-1]
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            start = time.perf_counter()
            records = trainer.train_mosa(lm, prompts, config, run_dir, progress=False)
            seconds = time.perf_counter() - start
    finally:
        trainer.make_reference = make_reference
    total, trainable = parameter_bytes([lm.module, *(r for r in references if r is not None)])
    return {
        "prompts_per_s": config.batch_size * len(records) / seconds,
        "base": base_bytes,
        "total": total,
        "trainable": trainable,
        "steps": len(records),
        "batch": config.batch_size,
    }


def main() -> None:
    from mosa.align.settings import read_preset
    from mosa.data import resolve_prompts
    from mosa.organism.build import OrganismConfig, build_organism, organism_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument(
        "--model", type=Path, help="an organism checkpoint directory (default: build or reuse the default organism)"
    )
    args = parser.parse_args()

    if args.model:
        path = args.model
    else:
        build_organism(OrganismConfig())
        path = organism_path(OrganismConfig())
    preset = read_preset("organism")["mosa"]
    prompts = resolve_prompts("organism-train", model=path).prompts
    results = {mode: run(mode, path, prompts, preset, args.steps) for mode in ("lora", "full")}
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    lora, full = results["lora"], results["full"]
    print(
        f"organism, {lora['steps']} steps of batch {lora['batch']}, response length {preset['response_length']}, "
        f"LoRA r={preset['lora_r']}"
    )
    for mode, r in results.items():
        print(
            f"  {mode:>4}: {r['prompts_per_s']:.1f} prompts/s (including the reference pass); parameters held "
            f"{r['total'] / 2**20:.2f} MiB = {r['total'] / r['base']:.2f} x the base weights "
            f"({r['trainable'] / 2**20:.2f} MiB trainable)"
        )
    print(
        f"  LoRA's reference is the base with the adapter off: base {lora['base'] / 2**20:.2f} MiB + adapter "
        f"{lora['trainable'] / 2**20:.2f} MiB; full fine-tuning keeps a frozen copy: {full['total'] / full['base']:.2f} x"
    )
    print(f"  full / LoRA throughput: {full['prompts_per_s'] / lora['prompts_per_s']:.2f}x; peak resident {peak_mib:.0f} MiB")
    if lora["total"] != lora["base"] + lora["trainable"]:
        raise SystemExit("LoRA's parameters are not base + adapter: something holds a second copy")
    print(
        f"paper, LLaDA-8B-Instruct: {PAPER_PROMPTS} prompts in about {PAPER_MINUTES} min on {PAPER_GPUS} "
        f"= {PAPER_PROMPTS / (PAPER_MINUTES * 60):.1f} prompts/s"
    )


if __name__ == "__main__":
    main()
