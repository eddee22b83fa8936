"""MOSA training throughput and memory on the organism, and what the paper's figures imply.

    python benchmarks/bench_align.py [--steps 40] [--model PATH]

Runs the organism preset's settings for a fixed number of steps on one organism (the default
one, built or reused from the cache, unless --model is given) and prints prompts/s, the peak
resident memory of the process, and the parameter memory split into the base weights and the
LoRA adapter. The reference forward pass uses the base weights with the adapter switched off, so
the parameter memory is base + adapter, never two copies of the base: the script checks it by
counting distinct parameter storages.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAPER_PROMPTS, PAPER_MINUTES, PAPER_GPUS = 3000, 12, "2 x A100-40GB"


def main() -> None:
    from mosa.align.trainer import train_mosa
    from mosa.cli.align import mosa_config, training_prompts
    from mosa.models import load_model
    from mosa.organism.build import OrganismConfig, build_organism

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--model", help="an organism checkpoint directory (default: build or reuse the default organism)")
    args = parser.parse_args()

    preset = yaml.safe_load(resources.files("mosa.align.presets").joinpath("organism.yaml").read_text())
    config = mosa_config({**preset["mosa"], "max_steps": args.steps, "save_every": args.steps})
    lm = load_model(args.model) if args.model else build_organism(OrganismConfig())
    base_bytes = sum(p.numel() * p.element_size() for p in lm.module.parameters())
    prompts = training_prompts("organism-train")

    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        records = train_mosa(lm, prompts, config, run_dir, progress=False)
        seconds = time.perf_counter() - start
    parameters = list(lm.module.parameters())
    adapter_bytes = sum(p.numel() * p.element_size() for p in parameters if p.requires_grad)
    total_bytes = sum(p.numel() * p.element_size() for p in parameters)
    storages = len({p.untyped_storage().data_ptr() for p in parameters})
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    prompts_per_s = config.batch_size * len(records) / seconds
    print(f"organism, {len(records)} steps of batch {config.batch_size}, response length {config.response_length}, "
          f"LoRA r={config.lora_r}")
    print(f"  throughput:        {prompts_per_s:.1f} prompts/s (including the reference pass)")
    print(f"  peak resident:     {peak_mib:.0f} MiB for the whole process")
    print(f"  parameters:        base {base_bytes / 2**20:.2f} MiB + adapter {adapter_bytes / 2**20:.2f} MiB "
          f"= {total_bytes / 2**20:.2f} MiB in {storages} distinct storages ({len(parameters)} tensors)")
    if total_bytes != base_bytes + adapter_bytes:
        raise SystemExit("the parameters are not base + adapter: something holds a second copy")
    print(f"paper, LLaDA-8B-Instruct: {PAPER_PROMPTS} prompts in about {PAPER_MINUTES} min on {PAPER_GPUS} "
          f"= {PAPER_PROMPTS / (PAPER_MINUTES * 60):.1f} prompts/s")


if __name__ == "__main__":
    main()
