"""`mosa align`: MOSA (or Initial Alignment, `--window initial`) from a preset, a YAML file and flags.

    mosa align --preset organism --output runs/mosa
    mosa align --preset organism --window initial --output runs/initial
    mosa align --preset paper-llada8b --output runs/llada-mosa          # on a GPU
    mosa align --preset organism --set lr=1e-4 --set harmful_floor=-20 --output runs/x
    mosa align ... --output runs/mosa --resume                          # after a crash or a kill
    accelerate launch --multi_gpu --num_processes 2 -m mosa align --preset paper-llada8b --output runs/llada-mosa

Precedence: preset < --config YAML < flags (--set KEY=VALUE for any MosaConfig field).
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

import yaml

from mosa.align.settings import mosa_config, prompt_split, training_prompts
from mosa.errors import MosaError

PRESETS = ("organism", "paper-llada8b")
RUN_KEYS = ("model", "trust_remote_code", "family", "prompts", "benign_prompts", "monitor", "dtype", "device", "mosa")
# The monitor of a model that is not the organism: held-out harmful prompts (the datasets' eval split)
# and benign ones, judged by a refusal keyword list; `monitor: false` turns it off.
MONITOR_DEFAULTS = {"prompts": 32, "benign": "gsm8k", "judge": "keyword-long"}


def register(subparsers) -> None:
    parser = subparsers.add_parser("align", help="align a dLLM with MOSA (or Initial Alignment) through LoRA")
    parser.add_argument("--preset", choices=PRESETS, default="organism")
    parser.add_argument("--config", type=Path, help="YAML overriding the preset (same layout as the presets)")
    parser.add_argument("--model", help="checkpoint directory or hub id; 'organism' builds or reuses the default organism")
    parser.add_argument("--trust-remote-code", action="store_true", default=None)
    parser.add_argument("--prompts", help="training prompts: dataset names joined by '+' (their training split), or organism-train")
    parser.add_argument("--benign-prompts", dest="benign_prompts",
                        help="prompts for the benign KL term (benign_beta > 0): dataset names joined by '+', or organism-utility")
    parser.add_argument("--window", help="START:END response positions, or 'initial' (same width, starting at 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a MosaConfig field (YAML value)")
    parser.add_argument("--output", type=Path, required=True, help="run directory (config, metrics.jsonl, checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(run=run)


def resolve_run(args: argparse.Namespace) -> dict:
    """The run's settings: the preset, then --config, then flags."""
    run = yaml.safe_load(resources.files("mosa.align.presets").joinpath(f"{args.preset}.yaml").read_text())
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
        run["mosa"][key.strip()] = yaml.safe_load(value)
    if args.window is not None:
        run["mosa"]["window"] = parse_window(args.window, run["mosa"].get("window", (8, 24)))
    return run


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

    from mosa.align.trainer import train_mosa
    from mosa.models import load_model

    settings = resolve_run(args)
    config = mosa_config(settings.get("mosa", {}))
    config.validate()
    device = settings.get("device", "cpu")
    process = PartialState(cpu=device == "cpu")  # under accelerate launch: this process's rank and GPU
    say = print if process.is_main_process else (lambda *_: None)
    if settings["model"] == "organism":
        from mosa.organism.build import OrganismConfig, build_organism, organism_path

        organism = OrganismConfig()
        lm = build_organism(organism, progress=not args.quiet)
        model_path = organism_path(organism)
    else:
        from mosa.organism.build import built_config

        model_path = Path(settings["model"])
        organism = built_config(model_path) if model_path.is_dir() else None
        lm = load_model(
            settings["model"], trust_remote_code=bool(settings.get("trust_remote_code")), family=settings.get("family"),
            dtype=settings.get("dtype", "float32"), device=str(process.device) if device != "cpu" else "cpu",
        )
    prompts, held_out = prompt_split(settings["prompts"], organism)
    benign = training_prompts(settings["benign_prompts"], organism) if settings.get("benign_prompts") else None
    monitor = organism_monitor(organism, model_path) if organism is not None else keyword_monitor(settings, config, held_out)
    if monitor is None:
        say("align: monitor off (monitor: false); degeneration is not checked")
    say(f"align: {len(prompts)} prompts on {process.num_processes} process(es), window {list(config.window)} of "
        f"{config.response_length}, beta {config.beta}, run directory {args.output}")
    records = train_mosa(lm, prompts, config, args.output, benign_prompts=benign, resume=args.resume,
                         progress=not args.quiet, monitor=monitor)
    if records:
        last = records[-1]
        say(f"align: step {last['step']}: reward {last['reward']:.3f} (R_pos {last['R_pos']:.3f}, R_neg {last['R_neg']:.3f}), "
            f"KL {last['kl']:.4f}")


def organism_monitor(organism, model_path: Path):
    """The organism's behaviour monitor, on the held-out prompts of the build being aligned."""
    from mosa.organism.card import behaviour_monitor

    held_out = json.loads((model_path / "held_out_harmful.json").read_text())
    return behaviour_monitor(held_out, organism)


def keyword_monitor(settings: dict, config, held_out: list[str]):
    """Refusal, over-refusal and degeneration on the held-out harmful prompts of the training datasets
    and on benign prompts (mosa.align.monitor)."""
    from mosa.align.monitor import keyword_monitor
    from mosa.data import load_dataset

    options = settings.get("monitor", {})
    if options is False:
        return None
    unknown = sorted(set(options) - set(MONITOR_DEFAULTS))
    if unknown:
        raise MosaError(f"unknown monitor settings {unknown}; known: {sorted(MONITOR_DEFAULTS)} (or monitor: false)")
    options = {**MONITOR_DEFAULTS, **options}
    harmful = held_out[: options["prompts"]]
    benign = [example.prompt for name in options["benign"].split("+") for example in load_dataset(name.strip())]
    return keyword_monitor(harmful, benign[: options["prompts"]], gen_length=config.response_length, judge=options["judge"])
