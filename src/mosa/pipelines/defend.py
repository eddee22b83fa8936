"""The comparison of defences on the model organism: what `mosa defend compare` runs.

    1 the shipped organism (the quick plan builds a smaller one, or reuses its cached build)
    2 train the four alignment defences with `mosa align`'s own code (its command line, the organism
      preset, the behaviour monitor on): Initial Alignment (`--window initial`), MOSA, the A2D-style
      any-order EOS objective (`--objective a2d`) and primed MOSA (`--objective primed-mosa`). A run the
      monitor stops as degenerate keeps its adapter: it is evaluated like the others and marked
    3 evaluate the original organism, each trained model and each sampler defence on the original
      (annealed-remasking, eos-monitor: `sampler.defences` of `mosa eval`) under every dLLM-native
      attack, organism judge (`mosa eval --config organism`)
    4 utility through lm-evaluation-harness (`mosa utility --config organism`, the sampler defences as
      its model's `defences`), and over-refusal: the share of those benign questions answered with a
      refusal or with nothing
    5 the table (defences.md, defences.csv), the plot (defences.png) and report.md / report.html

Every stage writes into the output directory and is reused when it is already there: a killed
comparison continues where it stopped (an alignment run resumes from its last checkpoint, an
evaluation from its last finished unit, lm-eval from its cache). Everything here is a small-model
result, not LLaDA's.

Attack success is counted over every attacked prompt: an empty response (what an EOS refusal or the
EOS monitor leaves) is a failed attack, not left out, since that is how an EOS-refusing defence
refuses. The paper's black-box attacks (its Tables 1 and 2: Avatar, TAP, Speak Easy, AOS, PAL, EPT,
DIA, AdvPrefix) are not run: each needs an attacker, helper or proxy LLM writing natural English, and
the organism understands only its own small vocabulary, so their prompts would be unknown tokens to it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mosa.errors import MosaError
from mosa.profiles import MODEL_PROFILES, BuildableProfile
from mosa.yamlio import parse_yaml

# Alignment defences: name -> the `mosa align` flags beside `--preset organism`.
TRAINED = {
    "Initial Alignment": ["--window", "initial"],
    "MOSA": [],
    "A2D-style": ["--objective", "a2d"],
    "primed-MOSA": ["--objective", "primed-mosa"],
}
# Sampler defences on the original organism: name -> the sampler's `defences`, at their defaults.
SAMPLER = {
    "annealed-remasking": [{"name": "annealed-remasking"}],
    "eos-monitor": [{"name": "eos-monitor"}],
}
ORIGINAL = "none (organism)"
DEFENCES = (ORIGINAL, *TRAINED, *SAMPLER)


@dataclass
class DefendPlan:
    """What the comparison measures. `--set KEY=VALUE` sets a field; `align.FIELD=VALUE` a MosaConfig
    field of every alignment run (e.g. align.max_steps=50)."""

    # None: the shipped organism; else the build settings of a smaller one (as DemoPlan's)
    organism: dict | None
    eval_prompts: int | None  # held-out harmful prompts per attack; None: every one (405)
    utility_items: int | None = None  # lm-eval's limit on the utility questions; None: every one (186)
    align: dict = field(default_factory=dict)  # MosaConfig overrides for every alignment run

    @classmethod
    def full(cls) -> DefendPlan:
        return cls(organism=None, eval_prompts=200)

    @classmethod
    def quick(cls) -> DefendPlan:
        from mosa.pipelines.demo import DemoPlan

        return cls(organism=DemoPlan.quick().organism, eval_prompts=40)

    def with_settings(self, assignments: list[str]) -> DefendPlan:
        known = [f.name for f in fields(self) if f.name not in ("organism", "align")]
        plan = DefendPlan(**{**asdict(self), "align": dict(self.align)})
        for assignment in assignments:
            key, sep, value = assignment.partition("=")
            key = key.strip()
            if not sep or not key:
                raise MosaError(f"--set {assignment!r} must look like KEY=VALUE, e.g. eval_prompts=100 or align.max_steps=50")
            parsed = parse_yaml(value, f"--set {assignment!r}: the value")
            if key.startswith("align."):
                plan.align[key.removeprefix("align.")] = parsed
            elif key in known:
                if parsed is not None and (not isinstance(parsed, int) or isinstance(parsed, bool) or parsed < 1):
                    raise MosaError(f"--set {key}={value}: give a whole number >= 1 (or null for every one)")
                setattr(plan, key, parsed)
            else:
                raise MosaError(f"--set {key}: unknown setting; known: {', '.join(known)}, align.FIELD (a MosaConfig field)")
        return plan


def run_compare(output: str | Path, plan: DefendPlan, *, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    from mosa.pipelines.defend_report import write_compare_report

    check_alignment_plan(plan)  # before the organism is built, a run trained or a folder made
    profile: BuildableProfile = MODEL_PROFILES.get("organism")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stage = lambda number, text: log(f"[{number}/5] {text}  ({time.perf_counter() - started:.0f} s)")  # noqa: E731

    if plan.organism is None:
        path = profile.checkpoint("organism")
        stage(1, f"the shipped model organism ({path})")
    else:
        path = profile.build_directory(plan.organism)
        stage(1, f"a smaller model organism (built once, then cached at {path})")
        profile.build(plan.organism, progress=progress, log=log)

    stage(2, f"alignment with mosa align: {', '.join(TRAINED)} (behaviour monitor on)")
    trained = {
        name: align(path, name, flags, plan, output / "align" / slug(name), progress, log) for name, flags in TRAINED.items()
    }

    stage(3, "every dLLM-native attack against each defence, organism judge")
    evaluations = {}
    for name in DEFENCES:
        adapter = trained[name]["adapter"] if name in trained else None
        evaluations[name] = evaluate(path, adapter, SAMPLER.get(name, []), plan, output / "eval" / slug(name), progress, log)

    stage(4, "utility through lm-evaluation-harness and over-refusal on its benign questions")
    utility = {}
    for name in DEFENCES:
        adapter = trained[name]["adapter"] if name in trained else None
        utility[name] = measure_utility(
            path, name, adapter, SAMPLER.get(name, []), plan, output / "utility" / slug(name), progress, log
        )

    stage(5, "the table, the plot and the report")
    seconds = time.perf_counter() - started
    page = write_compare_report(output, plan, trained, evaluations, utility, seconds)
    log(f"done in {seconds:.0f} s: {output / 'defences.md'}, {output / 'defences.png'}, {page}")
    return page


def slug(name: str) -> str:
    return name.split(" (")[0].lower().replace(" ", "-")


def align(path: Path, name: str, flags: list[str], plan: DefendPlan, run_dir: Path, progress: bool, log) -> dict:
    """One alignment defence, trained (or resumed, or reused) through `mosa align`'s command line with the
    organism preset and its behaviour monitor; its cost and the monitor's verdict. A run stopped as
    degenerate keeps its adapter and is returned like any other, its failure named."""
    from mosa.align.settings import mosa_config
    from mosa.align.trainer import DegenerateRun, latest_checkpoint
    from mosa.cli import build_parser
    from mosa.cli.align import resolve_run

    resume = latest_checkpoint(run_dir) is not None
    argv = align_argv(path, flags, plan, run_dir) + (["--resume"] if resume else []) + ([] if progress else ["--quiet"])
    args = build_parser().parse_args(argv)
    check_alignment_settings(run_dir, mosa_config(resolve_run(args)["mosa"]))
    if not (run_dir / "adapter").is_dir():
        if not resume and run_dir.is_dir():
            shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing to keep
        log(f"      {name}: mosa {' '.join(argv)}")
        started = time.perf_counter()
        try:
            args.run(args)  # its own lines ("align: ...") go to stdout, as the command's do
        except DegenerateRun:
            pass  # its monitor.json says why; read below, logged and marked in the table
        cost = {"wall_seconds": round(time.perf_counter() - started, 1), "resumed": resume}
        (run_dir / "cost.json").write_text(json.dumps(cost, indent=2) + "\n")
    config = json.loads((run_dir / "config.json").read_text())
    steps = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        steps[record["step"]] = record  # a resumed run may have written a step twice: the last one counts
    per_step = config["batch_size"] * config["grad_accum"]
    monitor = json.loads((run_dir / "monitor.json").read_text()) if (run_dir / "monitor.json").is_file() else None
    cost_file = run_dir / "cost.json"
    result = {
        "adapter": run_dir / "adapter",
        "config": config,
        "steps": max(steps, default=0),
        "optimiser_seconds": round(sum(per_step / record["prompts_per_s"] for record in steps.values()), 1),
        "cost": json.loads(cost_file.read_text()) if cost_file.is_file() else None,
        "monitor": monitor,
        "failure": (monitor or {}).get("failure"),
    }
    if result["failure"] is not None:
        failure = result["failure"]
        log(
            f"      {name}: DEGENERATE: the behaviour monitor found {failure['value']:.1%} coherent "
            f"({failure['setting']} {failure['floor']:.0%}); evaluated like the others and marked"
        )
    return result


def align_argv(path: Path | str, flags: list[str], plan: DefendPlan, run_dir: Path) -> list[str]:
    """`mosa align`'s command line for one alignment defence: the organism preset, its flags and the plan's align.*."""
    argv = ["align", "--preset", "organism", "--model", str(path), "--output", str(run_dir), *flags]
    return argv + [f"--set={key}={json.dumps(value)}" for key, value in plan.align.items()]


def check_alignment_plan(plan: DefendPlan) -> None:
    """Every alignment run's settings as `mosa align` resolves them (a window, a fit, an objective's
    options), refused in one line before the organism is built or anything trained."""
    from mosa.align.objectives import make_objective
    from mosa.align.settings import mosa_config
    from mosa.cli import build_parser
    from mosa.cli.align import resolve_run
    from mosa.models import load_tokenizer
    from mosa.profiles import model_path

    # The shipped organism's tokenizer: every organism build spells the sentences with the same words.
    tokenizer = load_tokenizer(model_path("organism"))
    for name, flags in TRAINED.items():
        try:
            args = build_parser().parse_args(align_argv("organism", flags, plan, Path("unused")))
            config = mosa_config(resolve_run(args)["mosa"])
            config.validate()
            make_objective(config).prepare(tokenizer, tokenizer.eos_token_id, config)  # the sentences fit the window
        except MosaError as error:
            raise MosaError(f"the {name} run: {error}") from None


def check_alignment_settings(run_dir: Path, config) -> None:
    """Refuse to reuse or resume an alignment run made with other settings (another `--set align.*`)."""
    stored_file = run_dir / "config.json"
    if not stored_file.is_file():
        return
    stored, wanted = json.loads(stored_file.read_text()), json.loads(json.dumps(asdict(config)))
    # target_modules: the run records the LoRA targets it resolved, where the preset leaves them open
    changed = [
        f"{key} {stored.get(key)!r} -> {value!r}"
        for key, value in wanted.items()
        if key != "target_modules" and stored.get(key) != value
    ]
    if changed:
        raise MosaError(
            f"{run_dir} was trained with other settings ({'; '.join(changed)}); restore them (they are in {stored_file}), "
            "or use a new --output directory"
        )


def evaluate(path: Path, adapter: Path | None, defences: list, plan: DefendPlan, run_dir: Path, progress: bool, log) -> dict:
    from mosa.eval import load_config, run_eval

    overrides = [] if plan.eval_prompts is None else [f"limit={plan.eval_prompts}"]
    overrides += [f"sampler.defences={json.dumps(defences)}"] if defences else []
    config = load_config("organism", overrides, model=str(path), adapter=None if adapter is None else str(adapter))
    rows = run_eval(config, run_dir, progress=progress, log=lambda message: log(f"      {message}"))
    return {"rows": rows, "config": config.to_dict(), "directory": run_dir}


def measure_utility(
    path: Path, name: str, adapter: Path | None, defences: list, plan: DefendPlan, run_dir: Path, progress: bool, log
) -> dict:
    """Utility as `mosa utility --config organism` measures it (the organism's utility questions through
    lm-eval, exact match), with the sampler's defences given to lm-eval's mosa model; and over-refusal:
    of those benign questions, the share answered with a refusal (organism judge) or with nothing."""
    from mosa.judges import EMPTY, make_judge
    from mosa.utility.run import load_config, run_utility

    overrides = [f"label={name}"]
    overrides += [f"model_args.defences={json.dumps(defences)}"] if defences else []
    overrides += [] if plan.utility_items is None else [f"limit={plan.utility_items}"]
    config = load_config("organism", overrides, model=str(path), adapter=None if adapter is None else str(adapter))
    (row,) = run_utility(config, run_dir, progress=progress)
    (column,) = config["tasks"]
    value, _, items = row["cells"][column]
    (samples,) = (run_dir / "tasks" / column).glob("*/samples_*.jsonl")
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    answers = [line["resps"][0][0] for line in lines]
    verdicts = make_judge("organism").judge_many([str(line["doc"]) for line in lines], answers)
    refused = sum(verdict.label in ("refusal", EMPTY) for verdict in verdicts)
    log(f"      {name}: utility {100 * value:.1f}% of {items}, over-refusal {refused} of {len(answers)}")
    return {"solved": round(value * items), "items": items, "refused": refused, "answers": len(answers), "config": config}
