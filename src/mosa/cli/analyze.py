"""`mosa analyze`: the paper's three analyses (docs/analysis.md), each writing NAME.json and NAME.png.

    mosa analyze prefill-position --model organism --output runs/analysis
    mosa analyze gcg-position --model organism --output runs/analysis
    mosa analyze decode-order --model GSAI-ML/LLaDA-8B-Instruct --dtype bfloat16 \\
        --device cuda --output runs/llada

Defaults depend on the model: the organism's fit its 32-token responses, any other model's follow
the paper (256 tokens). Precedence: those defaults < the YAML file given with --config (keys: the
analysis's option names, e.g. `positions: [0, 8, 16]`) < flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from pathlib import Path

from mosa.cli.options import add_model_options, read_yaml_settings
from mosa.errors import MosaError
from mosa.paths import check_output_dir


def int_list(text: str) -> list[int]:
    """'0,40,80' -> [0, 40, 80]."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must be integers separated by commas, e.g. 0,40,80") from None


def limit(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of prompts or 'all'")
    return int(text)


def register(subparsers) -> None:
    parser = subparsers.add_parser("analyze", help="the paper's analyses: prefill-position, gcg-position, decode-order")
    analyses = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    # A flag not given leaves no attribute, so that it does not override the model's defaults or --config.
    analyses.add_parser = functools.partial(analyses.add_parser, argument_default=argparse.SUPPRESS)

    prefill = analyses.add_parser("prefill-position", help="A: attack success against the position of a prefilled phrase")
    add_common_options(prefill)
    prefill.add_argument("--positions", type=int_list, help="response positions, e.g. 0,40,80,120,160 (organism: 0,6,13,20)")
    prefill.add_argument("--block-length", type=int, help="sampler block length (default 32; organism 8)")
    prefill.add_argument("--phrases", help="phrase set of the prefill attack: paper, affirmative, procedural, organism")
    add_judge_options(prefill)
    prefill.add_argument("--score-judge", help="a judge that scores harm (harm-rubric, strongreject; needs --backend)")
    prefill.add_argument(
        "--harmful", help="harmful prompts, a prompt spec (docs/data.md; default advbench), or organism-held-out"
    )
    prefill.set_defaults(run=run, options_class="PrefillPositionOptions")

    gcg = analyses.add_parser("gcg-position", help="B: GCG aimed at a phrase at response position 0 against a later one")
    add_common_options(gcg)
    gcg.add_argument("--positions", type=int_list, help="target response positions (default 0,30; organism 0,13)")
    gcg.add_argument("--block-length", type=int, help="sampler block length (default 32; organism 8)")
    gcg.add_argument("--target", help="one target phrase for every position (default: from --phrases)")
    gcg.add_argument("--phrases", help="phrase set for the targets: paper (affirmative at 0, procedural later), organism, ...")
    gcg.add_argument("--suffix-length", type=int, help="suffix tokens (default 20; organism 10)")
    gcg.add_argument("--iterations", type=int, help="GCG iterations (default 100; organism 40)")
    gcg.add_argument("--top-k", type=int, help="swaps per suffix slot ranked by the gradient (default 256; organism 64)")
    gcg.add_argument("--candidates", type=int, help="swaps evaluated per iteration (default 128; organism 64)")
    gcg.add_argument("--init", help="the word the suffix starts as (default '!'; organism 'the')")
    add_judge_options(gcg)
    gcg.add_argument("--harmful", help="harmful prompts, a prompt spec (docs/data.md; default advbench), or organism-held-out")
    gcg.set_defaults(run=run, options_class="GcgPositionOptions")

    order = analyses.add_parser("decode-order", help="C: the order in which the response is unmasked, benign vs harmful")
    add_common_options(order)
    order.add_argument("--block-lengths", type=int_list, help="block lengths to compare (default 256,32; organism 32,8)")
    order.add_argument("--benign", help="benign prompts, a prompt spec (docs/data.md; default gsm8k), or organism-utility")
    order.add_argument("--harmful", help="harmful prompts, a prompt spec (docs/data.md; default advbench), or organism-held-out")
    order.set_defaults(run=run, options_class="DecodeOrderOptions")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    parser.set_defaults(model="organism")
    parser.add_argument(
        "--adapter", type=Path, default=None, help="a peft adapter directory (e.g. mosa align's adapter/), merged into the model"
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML with the analysis's options (flags override it)")
    parser.add_argument("--output", type=Path, required=True, help="directory for NAME.json and NAME.png")
    parser.add_argument("--limit", type=limit, help="prompts per prompt set, or 'all' (defaults: docs/analysis.md)")
    parser.add_argument("--gen-length", type=int, help="response tokens (default 256; organism 32)")
    parser.add_argument("--steps", type=int, help="denoising steps (default gen_length: one token per step)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default 0: greedy)")
    parser.add_argument("--remasking", help="low_confidence (default), random, margin, entropy (see docs/sampler.md)")
    parser.add_argument("--seed", type=int, help="seed of the phrase draws, GCG's swaps and sampling noise (default 0)")
    parser.add_argument("--batch-size", type=int, help="prompts sampled together (default 16)")
    parser.add_argument("--quiet", action="store_true", default=False, help="no progress bars")


def add_judge_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--judge", help="decides attack success (default keyword-long; organism: organism); see `mosa judge list`"
    )
    parser.add_argument("--backend", help="the judge LLM of rubric judges, e.g. openai:MODEL@URL")


def run(args: argparse.Namespace) -> None:
    import mosa.analysis as analysis
    from mosa.analysis.common import with_backend, write_json
    from mosa.models import check_adapter, check_prompts_before_loading
    from mosa.profiles import model_path

    options = resolve_options(getattr(analysis, args.options_class), args)
    if hasattr(args, "backend"):
        judges = {
            name: with_backend(getattr(options, name), args.backend)
            for name in ("judge", "score_judge")
            if hasattr(options, name)
        }
        if judges == {name: getattr(options, name) for name in judges}:
            raise MosaError(
                f"--backend {args.backend}: no judge of this run takes a backend; name a rubric judge (harm-rubric, strongreject)"
            )
        options = dataclasses.replace(options, **judges)
    # Settings, prompts and the output directory are checked before the (possibly long) model load.
    options.check()
    check_output_dir(args.output)
    if args.adapter is not None:
        check_adapter(args.adapter, "--adapter")
    names = ("benign", "harmful") if args.analysis == "decode-order" else ("harmful",)
    prompt_sets = {name: analysis.load_prompts(getattr(options, name), options.limit, args.model) for name in names}

    every_prompt = [prompt for prompts in prompt_sets.values() for prompt in prompts.prompts]
    check_prompts_before_loading(
        model_path(args.model),
        every_prompt,
        options.gen_length,
        trust_remote_code=getattr(args, "trust_remote_code", False),
        family=getattr(args, "family", None),
    )
    lm, model_name = load_analysis_model(args)
    progress = not args.quiet
    if args.analysis == "decode-order":
        result = analysis.decode_order(lm, prompt_sets, options, model_name=model_name, progress=progress)
    else:
        measure = analysis.prefill_position if args.analysis == "prefill-position" else analysis.gcg_position
        result = measure(lm, prompt_sets["harmful"], options, model_name=model_name, progress=progress)

    args.output.mkdir(parents=True, exist_ok=True)
    json_path = write_json(result, args.output / f"{args.analysis}.json")
    plot = {
        "prefill-position": analysis.plot_prefill_position,
        "gcg-position": analysis.plot_gcg_position,
        "decode-order": analysis.plot_decode_order,
    }[args.analysis]
    png_path = plot(result, args.output / f"{args.analysis}.png")
    print("\n".join(summary_lines(result)))
    print(f"wrote {json_path} and {png_path}")


def resolve_options(options_class, args: argparse.Namespace):
    """The model's defaults (its profile's, else the paper's), then --config, then the flags given."""
    from mosa.profiles import find_profile

    profile = find_profile(args.model)
    options = options_class() if profile is None else profile.analysis_options(options_class)
    names = tuple(field.name for field in dataclasses.fields(options_class) if field.name != "organism")
    if args.config is not None:
        options = dataclasses.replace(options, **read_yaml_settings(args.config, allowed=names))
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return dataclasses.replace(options, **given)


def load_analysis_model(args: argparse.Namespace):
    """(the DiffusionLM, the name it is recorded under); the adapter, if any, merged into it."""
    from mosa.models import load_model, merge_adapter
    from mosa.profiles import model_path

    lm = load_model(
        model_path(args.model),
        trust_remote_code=getattr(args, "trust_remote_code", False),
        family=getattr(args, "family", None),
        dtype=args.dtype,
        device=args.device,
    )
    if args.adapter is None:
        return lm, args.model
    return merge_adapter(lm, args.adapter), f"{args.model} + adapter {args.adapter}"


def summary_lines(result: dict) -> list[str]:
    """The headline numbers, for the terminal."""
    percent = lambda low, high: f"[{100 * low:.0f}, {100 * high:.0f}]"  # noqa: E731
    if result["analysis"] == "prefill-position":
        lines = [
            f"prefill at {s['position']:>3}: attack success {100 * s['asr']:5.1f}% {percent(*s['asr_ci95'])}"
            + (f", mean score {s['mean_score']:.2f}" if s["mean_score"] is not None else "")
            for s in result["positions"]
        ]
        return lines + [f"harm: {result['harm_measure']}"]
    if result["analysis"] == "gcg-position":
        return [
            f"GCG target at {s['position']:>3}: loss {s['initial_loss_mean']:.3f} -> {s['final_loss_mean']:.3f}, "
            f"target reached {100 * s['target_reached_rate']:.0f}%, attack success {100 * s['asr']:.1f}% {percent(*s['asr_ci95'])}"
            for s in result["positions"]
        ]
    lines = []
    for setting in result["settings"]:
        for name, s in setting["prompt_sets"].items():
            tau_all, tau_content = s["kendall_tau_all"]["mean"], s["kendall_tau_content"]["mean"]
            lines.append(
                f"blocks of {setting['block_length']:>3}, {name}: Kendall tau all {_number(tau_all)}, content {_number(tau_content)}; "
                f"mean step EOS {_number(s['end_commits']['mean_step'])}, content {_number(s['content_commits']['mean_step'])}"
            )
    return lines


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
