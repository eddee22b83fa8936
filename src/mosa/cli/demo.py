"""`mosa demo`: build (or reuse) the model organism and show what prefill attacks do to it."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="build the model organism on this machine (CPU, minutes) and show its behaviour under prefill attacks"
    )
    parser.add_argument("--config", type=Path, help="YAML with OrganismConfig fields (default: the standard organism)")
    parser.add_argument("--examples", type=int, default=3, help="held-out harmful prompts to show")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from mosa.cli.organism import organism_config
    from mosa.organism.build import build_organism, organism_path
    from mosa.organism.card import CONDITIONS, condition_prefill, format_card, read_card, sample_responses
    from mosa.organism.judge import judge_response

    config = organism_config(args.config)
    print(f"[1/2] the model organism (built once, then cached at {organism_path(config)})")
    start = time.perf_counter()
    lm = build_organism(config, progress=not args.quiet)
    print(f"      ready in {time.perf_counter() - start:.0f} s\n")
    print(format_card(read_card(organism_path(config))))

    print("\n[2/2] held-out harmful prompts, plain and under prefill attacks (same sampler as the card)")
    prompts = json.loads((organism_path(config) / "held_out_harmful.json").read_text())[: args.examples]
    responses = {name: sample_responses(lm, prompts, config.gen_length, condition_prefill(lm, name)) for name in CONDITIONS}
    for row, prompt in enumerate(prompts):
        print(f"\n  > {prompt}")
        for name, (description, _) in CONDITIONS.items():
            response = responses[name][row]
            print(f"    {description:<36} [{judge_response(response).label}] {response}")
    print("\nThese are a small model's results, built to exercise the pipeline; they are not results about LLaDA.")
