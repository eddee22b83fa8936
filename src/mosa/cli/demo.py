"""`mosa demo`: build (or reuse) a small dLLM and sample from it with the exact sampler."""

from __future__ import annotations

import argparse
import time

import torch


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="build a small dLLM on this machine and sample from it (CPU, about a minute)")
    parser.add_argument("--examples", type=int, default=6, help="held-out prompts to show")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from mosa.organism.demo_model import cache_dir, demo_model
    from mosa.sampling import generate

    print(f"[1/2] small bidirectional Llama trained on arithmetic facts (cache: {cache_dir()})")
    start = time.perf_counter()
    lm, train, held_out = demo_model()
    print(f"      ready in {time.perf_counter() - start:.1f}s")

    print("[2/2] sampling every prompt: temperature 0, low-confidence remasking, gen_length 16, "
          "16 steps, blocks of 8")
    config = lm.sampler_config(gen_length=16, steps=16, block_length=8)

    def sample(pairs):
        input_ids, attention_mask = lm.encode_chat([prompt for prompt, _ in pairs])
        output = generate(lm.module, input_ids, attention_mask, config=config)
        responses = [lm.decode_response(row) for row in output.response]
        return responses, output.commit_step, sum(r == expected for r, (_, expected) in zip(responses, pairs))

    seen_responses, commit_steps, seen_correct = sample(train)
    responses, _, correct = sample(held_out)
    for label, pairs, answers in (("seen", train, seen_responses), ("held-out", held_out, responses)):
        for (prompt, expected), response in list(zip(pairs, answers))[: args.examples // 2]:
            print(f"  {label:<8} {'ok ' if response == expected else 'err'} {prompt:<22} -> {response}")
    order = torch.argsort(commit_steps[0]).tolist()
    print(f"  decoding order of the first response (response position committed at step 0, 1, ...): {order}")
    print("exact match (a small-model demo, not a result about LLaDA):")
    print(f"  facts seen in training: {seen_correct}/{len(train)} ({100 * seen_correct / len(train):.0f}%)")
    print(f"  held-out facts:         {correct}/{len(held_out)} ({100 * correct / len(held_out):.0f}%)")
