"""`mosa generate`: sample responses from a masked-diffusion LM with the exact sampler."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from mosa.cli.options import add_model_options, add_sampler_options, parse_prefill, sampler_settings
from mosa.errors import MosaError
from mosa.paths import check_output_file


def register(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="sample responses with the exact LLaDA sampler")
    add_model_options(parser)
    add_sampler_options(parser)
    parser.add_argument("--prompt", action="append", default=[], help="a user prompt (repeat for a batch)")
    parser.add_argument("--prompts-file", type=Path, help="a text file with one prompt per line")
    parser.add_argument(
        "--prefill",
        action="append",
        metavar="POS:TEXT",
        help="fix TEXT at response position POS (repeatable; a value starting with '-' needs --prefill=POS:TEXT)",
    )
    parser.add_argument(
        "--truncate-prompt",
        action="store_true",
        help="keep the last tokens of a prompt too long for the model's positions (else it is refused)",
    )
    parser.add_argument("--output", type=Path, help="also write one JSON record per prompt (response, commit steps)")
    parser.add_argument("--show-order", action="store_true", help="print the step at which each response token was committed")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from mosa.models import check_prompts_before_loading, load_model, refuse_empty_prompts
    from mosa.profiles import find_profile, model_path
    from mosa.sampling import SamplerConfig, decoding_label, defences_label, generate

    prompts = list(args.prompt)
    if args.prompts_file:
        if not args.prompts_file.is_file():
            raise MosaError(f"--prompts-file {args.prompts_file}: no such file")
        prompts += [line.strip() for line in args.prompts_file.read_text().splitlines() if line.strip()]
    if not prompts:
        raise MosaError("no prompt given; use --prompt TEXT or --prompts-file FILE")
    if not args.model:
        raise MosaError("--model is required (a checkpoint directory or hub id)")

    # Everything is checked before the (possibly long) model load.
    refuse_empty_prompts(prompts)
    profile = find_profile(args.model)  # the organism's defaults: the settings its card was measured with
    settings = {**(profile.sampler_defaults(args.model) if profile else {}), **sampler_settings(args)}
    requested = SamplerConfig(**settings)
    requested.validate(require_ids=False)
    prefill_text = parse_prefill(args.prefill, requested.gen_length)
    if args.output:
        check_output_file(args.output, example="records.jsonl")
    truncation_hint = ", or pass --truncate-prompt to keep its last tokens that fit"
    if not args.truncate_prompt:
        check_prompts_before_loading(
            model_path(args.model),
            prompts,
            requested.gen_length,
            trust_remote_code=args.trust_remote_code,
            family=args.family,
            too_long_hint=truncation_hint,
        )
    lm = load_model(
        model_path(args.model), trust_remote_code=args.trust_remote_code, family=args.family, dtype=args.dtype, device=args.device
    )
    config = lm.sampler_config(**settings)
    if args.truncate_prompt:
        prompts = truncated_prompts(lm, prompts, config.gen_length)
    input_ids, attention_mask = lm.encode_chat(prompts, gen_length=config.gen_length, too_long_hint=truncation_hint)
    prefill = {position: lm.tokenizer(text, add_special_tokens=False)["input_ids"] for position, text in prefill_text.items()}
    ids = prompt_ids(prompts)
    output = generate(lm.module, input_ids, attention_mask, config=config, prefill=prefill, prompt_ids=ids)

    records = []
    for prompt_id, prompt, response, steps, events in zip(
        ids, prompts, output.response, output.commit_step, output.defence_events
    ):
        text = lm.decode_response(response)
        records.append(
            {
                "prompt_id": prompt_id,
                "prompt": prompt,
                "response": text,
                "response_ids": response.tolist(),
                "commit_step": steps.tolist(),
                "decoding": decoding_label(config.decoding, config.threshold),
                "defences": defences_label(config.defences),
                "defence_events": events,  # what the defences did, e.g. {"eos-monitor": {"step": 5, "score": 0.83}}
                "forward_passes": output.forward_passes,  # of the whole batch of prompts
            }
        )
        print(f"> {prompt}\n{text}")
        for name, event in events.items():
            print(f"  [{name} ended the response at step {event['step']} (score {event['score']:g})]")
        if args.show_order:
            tokens = lm.tokenizer.convert_ids_to_tokens(response.tolist())
            print("  " + " ".join(f"{token}@{step}" for token, step in zip(tokens, steps.tolist())))
    if args.output:
        with open(args.output, "w") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
        print(f"wrote {len(records)} records to {args.output}", file=sys.stderr)


def prompt_ids(prompts: list[str]) -> list[str]:
    """The id a prompt's noise follows (at temperature > 0): its text, so a prompt is sampled alike
    alone or among others; the n-th copy of a repeated prompt is "text #n", a sample of its own."""
    copies: Counter[str] = Counter()
    ids = []
    for prompt in prompts:
        copies[prompt] += 1
        ids.append(prompt if copies[prompt] == 1 else f"{prompt} #{copies[prompt]}")
    return ids


def truncated_prompts(lm, prompts: list[str], gen_length: int) -> list[str]:
    """--truncate-prompt: each prompt cut to its last tokens that fit, which stderr reports."""
    fitted = [lm.truncate_prompt(prompt, gen_length) for prompt in prompts]
    count = lambda text: len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    for number, (prompt, kept) in enumerate(zip(prompts, fitted), start=1):
        if kept != prompt:
            print(
                f"mosa: warning: prompt {number} cut to its last {count(kept)} of {count(prompt)} tokens to fit the model's "
                f"{lm.max_positions} positions with gen_length={gen_length} (--truncate-prompt)",
                file=sys.stderr,
            )
    return fitted
