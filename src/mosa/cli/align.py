"""`mosa align`: MOSA (or Initial Alignment, `--window initial`, or another training objective,
`--objective NAME`) from a preset, a YAML file and flags.

    mosa align --preset organism --output runs/mosa
    mosa align --preset organism --window initial --output runs/initial
    mosa align --preset organism --objective a2d --output runs/a2d     # any-order EOS on the organism's pairs
    mosa align --preset organism --objective primed-mosa --output runs/primed
    mosa align --preset paper-llada8b --output runs/llada-mosa          # on a GPU
    mosa align --preset organism --set lr=1e-4 --set harmful_floor=-20 --output runs/x
    mosa align ... --output runs/mosa --resume                          # after a crash or a kill
    accelerate launch --multi_gpu --num_processes 2 -m mosa align --preset paper-llada8b --output runs/llada-mosa

Precedence: preset < --config YAML < flags (--set KEY=VALUE for any MosaConfig field; `objective`
and `objective_options` are fields too). Prompts given as a CSV/JSONL file name their columns with
`columns: {prompt: COLUMN, response: COLUMN}` (the response: a2d's pairs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mosa.align.objective import format_window
from mosa.align.settings import ALIGN_PRESETS, mosa_config, read_preset
from mosa.errors import MosaError
from mosa.yamlio import parse_yaml

RUN_KEYS = ("model", "trust_remote_code", "family", "prompts", "benign_prompts", "columns", "monitor", "dtype", "device", "mosa")
COLUMN_KEYS = {"prompt": "column", "response": "target_column"}  # `columns:` -> mosa.data.load_dataset's options
# The monitor of a model whose profile (mosa.profiles) gives none of its own, as the organism's does:
# `prompts` held-out harmful prompts (`harmful`, a prompt spec; by default the ':eval' side of ':train'
# training prompts) and as many benign ones, judged by a refusal keyword list; `monitor: false` turns it off.
MONITOR_DEFAULTS = {"prompts": 32, "harmful": None, "benign": "gsm8k", "judge": "keyword-long"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "align", help="align a dLLM with MOSA (or Initial Alignment, or another objective) through LoRA"
    )
    parser.add_argument("--preset", help="the run's base settings (required): organism (CPU) or paper-llada8b (GPU)")
    parser.add_argument("--config", type=Path, help="YAML overriding the preset (same layout as the presets)")
    parser.add_argument("--model", help="checkpoint directory or hub id; 'organism': the shipped model organism")
    parser.add_argument("--trust-remote-code", action="store_true", default=None)
    parser.add_argument(
        "--prompts", help="training prompts, a prompt spec (docs/data.md): e.g. strongreject+donotanswer:train, or organism-train"
    )
    parser.add_argument(
        "--benign-prompts",
        dest="benign_prompts",
        help="benign prompts, a prompt spec: the benign KL term's (benign_beta > 0) and a2d's benign pairs (e.g. organism-utility)",
    )
    parser.add_argument(
        "--objective",
        help="the training objective: mosa (the default), a2d or primed-mosa (docs/align.md); options: --set objective_options={...}",
    )
    parser.add_argument("--window", help="START:END response positions, or 'initial' (same width, starting at 0)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a MosaConfig field (YAML value)"
    )
    parser.add_argument("--output", type=Path, required=True, help="run directory (config, metrics.jsonl, checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(run=run)


def resolve_run(args: argparse.Namespace) -> dict:
    """The run's settings: the preset, then --config, then flags."""
    if args.preset is None:  # no silent default: the organism preset builds a model, the paper's needs a GPU
        raise MosaError(
            f"--preset is required: {' or '.join(ALIGN_PRESETS.names())} (e.g. mosa align --preset organism --output runs/mosa)"
        )
    run = read_preset(args.preset)
    if args.config is not None:
        from mosa.cli.options import read_yaml_settings

        override = read_yaml_settings(args.config, allowed=RUN_KEYS)
        run["mosa"] = {**run.get("mosa", {}), **override.pop("mosa", {})}
        run.update(override)
    for key in ("model", "trust_remote_code", "prompts", "benign_prompts"):
        if getattr(args, key) is not None:
            run[key] = getattr(args, key)
    for assignment in args.set:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise MosaError(f"--set {assignment!r} must look like KEY=VALUE, e.g. lr=1e-4")
        run["mosa"][key.strip()] = parse_yaml(value, f"--set {assignment!r}: the value")
    if args.window is not None:
        run["mosa"]["window"] = parse_window(args.window, run["mosa"].get("window", (8, 24)))
    if args.objective is not None:
        run["mosa"]["objective"] = args.objective
    return run


def load_options(settings: dict) -> dict:
    """`columns: {prompt: COLUMN, response: COLUMN}` as mosa.data.load_dataset's options, for prompt
    sets given as CSV/JSONL files."""
    columns = settings.get("columns") or {}
    if not isinstance(columns, dict) or set(columns) - set(COLUMN_KEYS):
        raise MosaError(
            f"columns: {columns!r} must be a mapping with keys among {sorted(COLUMN_KEYS)}, e.g. {{prompt: text, response: answer}}"
        )
    return {COLUMN_KEYS[key]: value for key, value in columns.items()}


def parse_window(text: str, mosa_window) -> list[int]:
    """'20:60' -> [20, 60]; 'initial' -> the MOSA window's width placed at position 0."""
    if text == "initial":
        start, end = mosa_window
        return [0, end - start]
    start, sep, end = text.partition(":")
    if not sep or not start.strip().isdigit() or not end.strip().isdigit():
        raise MosaError(f"--window {text!r} must be START:END (e.g. 20:60) or 'initial'")
    return [int(start), int(end)]


def run(args: argparse.Namespace) -> None:
    from accelerate import PartialState

    from mosa.align.objectives import make_objective
    from mosa.align.trainer import check_run_directory, train_mosa
    from mosa.data import resolve_prompts
    from mosa.models import load_model, load_tokenizer
    from mosa.profiles import find_profile, model_path
    from mosa.provenance import fingerprint_model

    settings = resolve_run(args)
    config = mosa_config(settings.get("mosa", {}))
    config.validate()
    check_run_directory(args.output, args.resume)
    device = settings.get("device", "cpu")
    process = PartialState(cpu=device == "cpu")  # under accelerate launch: this process's rank and GPU
    say = print if process.is_main_process else (lambda *_: None)
    model = settings["model"]
    objective = make_objective(config)
    # Every prompt set is resolved before the model loads: a bad spec costs nothing. The benign set only
    # when something uses it, so that a run's inputs.json holds what it trained on.
    options = load_options(settings)
    prompts = resolve_prompts(settings["prompts"], model=model, load_options=options)
    uses_benign = config.benign_beta > 0 or objective.needs_benign
    benign = None
    if settings.get("benign_prompts") and uses_benign:
        benign = resolve_prompts(settings["benign_prompts"], model=model, load_options=options)
    objective.check_data(prompts, benign)
    progress = not args.quiet
    profile = find_profile(model)
    own_monitor = None if profile is None else profile.monitor(model, progress)
    monitor, monitor_prompts = own_monitor or keyword_monitor(settings, config, prompts, progress)
    if monitor is None:
        say("align: monitor off (monitor: false); degeneration is not checked")
    # What the objective tokenises (MOSA: the sentences against the window), with the tokenizer alone: before a long load.
    tokenizer = load_tokenizer(model_path(model), trust_remote_code=bool(settings.get("trust_remote_code")))
    objective.prepare(tokenizer, tokenizer.eos_token_id, config)  # the length of the EOS counts here, not its id
    lm = load_model(
        model_path(model),
        trust_remote_code=bool(settings.get("trust_remote_code")),
        family=settings.get("family"),
        dtype=settings.get("dtype", "float32"),
        device=str(process.device) if device != "cpu" else "cpu",
    )
    # After loading, so that a hub id is fingerprinted through the snapshot it was loaded from.
    inputs = {"model": fingerprint_model(model), "monitor_prompts": monitor_prompts} if process.is_main_process else None
    say(
        f"align: objective {config.objective}, {len(prompts)} prompts ({prompts.spec}) on {process.num_processes} process(es), "
        f"window {format_window(config.window)} of {config.response_length}, beta {config.beta}, run directory {args.output}"
    )
    records = train_mosa(
        lm,
        prompts,
        config,
        args.output,
        benign_prompts=benign,
        inputs=inputs,
        resume=args.resume,
        progress=progress,
        monitor=monitor,
    )
    if records:
        last = records[-1]
        figures = ", ".join(f"{name} {value:.4f}" for name, value in last.items() if name not in ("step", "lr", "prompts_per_s"))
        say(f"align: step {last['step']}: {figures}")


def keyword_monitor(settings: dict, config, prompts, progress: bool = False):
    """Refusal, over-refusal and degeneration on held-out harmful prompts and on benign prompts
    (mosa.align.monitor); and the record of both prompt sets."""
    from mosa.align.monitor import keyword_monitor
    from mosa.data import resolve_prompts

    options = settings.get("monitor", {})
    if options is False:
        return None, None
    unknown = sorted(set(options) - set(MONITOR_DEFAULTS))
    if unknown:
        raise MosaError(f"unknown monitor settings {unknown}; known: {sorted(MONITOR_DEFAULTS)} (or monitor: false)")
    options = {**MONITOR_DEFAULTS, **options}
    harmful_spec = options["harmful"]
    if harmful_spec is None:
        if prompts.part != "train":
            raise MosaError(
                f"the monitor needs held-out harmful prompts and {prompts.spec!r} holds none back: set "
                "monitor: {harmful: SPEC} (e.g. harmbench-val), train on a ':train' part, or set monitor: false"
            )
        harmful_spec = f"{prompts.spec.rpartition(':')[0]}:eval"
    harmful = resolve_prompts(harmful_spec, limit=options["prompts"])
    benign = resolve_prompts(options["benign"], limit=options["prompts"])
    monitor = keyword_monitor(
        harmful.prompts, benign.prompts, gen_length=config.response_length, judge=options["judge"], progress=progress
    )
    return monitor, {"harmful": harmful.record(), "benign": benign.record()}
