"""`mosa utility`: a model's utility on lm-evaluation-harness tasks, one lm-eval evaluation per task
at that task's settings, resumable, with a table in the paper's layout (a row per model, a column per task).

    config = load_config("paper-llada8b", ["limit=20"], adapter="runs/llada-mosa/adapter")
    run_utility(config, Path("runs/utility-mosa"), confirm_run_unsafe_code=True)
    print(utility_markdown([read_run(Path("runs/utility-base")), read_run(Path("runs/utility-mosa"))]))

A config (a shipped name in UTILITY_CONFIGS, or a YAML file) names the lm-eval model type
(`lm_eval_model`, "mosa" by default), the model and adapter, model arguments shared by every task,
and the tasks: per table column, the lm-eval task, its shots, the metric shown in the table and the
model arguments of that task (the sampler's gen_length, steps, block_length, ...). The model is
loaded once per task, with that task's arguments: a minute for LLaDA-8B against hours of sampling.

A run directory holds

    config.json                    the config the run was started with (a different one is refused)
    tasks/COLUMN/settings.json     what the task runs with (a different one is refused)
    tasks/COLUMN/cache_rank0.db    lm-eval's request cache: a killed task resumes from its last answer
    tasks/COLUMN/MODEL/results_*.json, samples_*.jsonl   lm-eval's own results files
    tasks/COLUMN/result.json       written last: the task is finished and is not run again
    utility.md, utility.csv        the table

Everything is checked before any model is loaded: the settings, that each task exists and its data
loads, and that a task which executes generated code (HumanEval) has the user's permission
(`confirm_run_unsafe_code`, lm-eval's switch). Details: docs/utility.md.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from mosa.errors import MosaError
from mosa.eval.config import differences, expand_environment
from mosa.eval.store import lock
from mosa.models import check_adapter
from mosa.paths import write_atomically
from mosa.registry import Registry
from mosa.yamlio import layered_settings

UTILITY_CONFIGS: Registry[Path] = Registry("utility config")
UTILITY_CONFIGS.add("paper-llada8b", Path(__file__).parent / "configs" / "paper-llada8b.yaml")
TASKS_DIR = Path(__file__).parent / "tasks"  # mosa's offline lm-eval tasks (mosa_gsm8k, ...)

SETTINGS = (
    "model",  # given to the lm-eval model as model_args `model`
    "adapter",  # a peft adapter directory, given as model_args `adapter`
    "label",  # the table's row name; default: the adapter's run directory, else the model
    "lm_eval_model",  # the lm-eval model type
    "model_args",  # for every task
    "apply_chat_template",
    "fewshot_as_multiturn",
    "limit",  # the first `limit` items of each task
    "tasks",  # column -> {task, num_fewshot, metric, model_args}
)
TASK_SETTINGS = ("task", "num_fewshot", "metric", "model_args")
CONFIG_FILE = "config.json"
SETTINGS_FILE = "settings.json"
RESULT_FILE = "result.json"
# What identifies the model being measured: a run directory holds one.
IDENTITY = ("model", "adapter", "lm_eval_model")


def load_config(
    source: str | Path | None, overrides: list[str] = (), *, base: dict | None = None, model=None, adapter=None
) -> dict:
    """A config from a shipped name or a YAML file (else `base`, a run's own config.json), then the
    `--set KEY=VALUE` overrides (dotted keys reach into mappings: tasks.gsm8k.num_fewshot=8), then
    --model and --adapter; checked in full."""
    settings, where = layered_settings(
        source, base, overrides, UTILITY_CONFIGS, SETTINGS, "limit=20 or tasks.gsm8k.num_fewshot=8", model=model, adapter=adapter
    )
    return _checked(expand_environment(settings), where)


def _checked(settings: dict, where: str) -> dict:
    """The settings with defaults filled in, or MosaError naming the first bad one."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise MosaError(f"{where}: unknown settings {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    config = {
        "model": None,
        "adapter": None,
        "label": None,
        "lm_eval_model": "mosa",
        "model_args": {},
        "apply_chat_template": False,
        "fewshot_as_multiturn": False,
        "limit": None,
        **settings,
    }
    if not isinstance(config["model"], str) or not config["model"].strip():
        raise MosaError(f"{where}: model must name the model: a checkpoint directory, a hub id, or organism")
    adapter = config["adapter"]
    if adapter is not None:
        check_adapter(str(adapter))
    if not isinstance(config["lm_eval_model"], str) or not config["lm_eval_model"]:
        raise MosaError(f"lm_eval_model={config['lm_eval_model']!r} must name an lm-eval model type, e.g. mosa")
    for name in ("apply_chat_template", "fewshot_as_multiturn"):
        if not isinstance(config[name], bool):
            raise MosaError(f"{name}={config[name]!r} must be true or false")
    limit = config["limit"]
    if limit is not None and (not _is_int(limit) or limit < 1):
        raise MosaError(f"limit={limit!r} must be a whole number >= 1, or left out for every item")
    _check_model_args(config["model_args"], "model_args")
    tasks = config.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise MosaError(f"{where}: tasks must map table columns to tasks, e.g. tasks: {{gsm8k: {{task: mosa_gsm8k}}}}")
    config["tasks"] = {column: _task_spec(column, spec) for column, spec in tasks.items() if spec is not None}
    if not config["tasks"]:
        raise MosaError(f"{where}: every task was removed; keep at least one")
    if config["label"] is None:
        config["label"] = Path(str(adapter)).parent.name if adapter else config["model"]
    return config


def _task_spec(column, spec) -> dict:
    if not isinstance(column, str) or not column or "/" in column:
        raise MosaError(f"task column {column!r} must be a name without '/', e.g. gsm8k")
    if isinstance(spec, str):
        spec = {"task": spec}
    if not isinstance(spec, dict):
        raise MosaError(f"tasks.{column} must be a task name or a mapping with task: NAME")
    unknown = sorted(set(spec) - set(TASK_SETTINGS))
    if unknown:
        raise MosaError(f"tasks.{column}: unknown settings {', '.join(unknown)}; known: {', '.join(TASK_SETTINGS)}")
    spec = {"num_fewshot": None, "metric": None, "model_args": {}, **spec}
    if not isinstance(spec.get("task"), str) or not spec["task"]:
        raise MosaError(f"tasks.{column}.task must name an lm-eval task, e.g. mosa_gsm8k or gsm8k")
    if spec["num_fewshot"] is not None and (not _is_int(spec["num_fewshot"]) or spec["num_fewshot"] < 0):
        raise MosaError(f"tasks.{column}.num_fewshot={spec['num_fewshot']!r} must be a whole number >= 0")
    if spec["metric"] is not None and not isinstance(spec["metric"], str):
        raise MosaError(f"tasks.{column}.metric={spec['metric']!r} must be a metric key of lm-eval's results, e.g. acc,none")
    _check_model_args(spec["model_args"], f"tasks.{column}.model_args")
    return spec


def _check_model_args(value, where: str) -> None:
    if not isinstance(value, dict):
        raise MosaError(f"{where} must be a mapping of model arguments, e.g. {{gen_length: 256}}")
    for reserved in ("model", "adapter"):
        if reserved in value:
            raise MosaError(f"{where}.{reserved}: give the {reserved} as the top-level setting {reserved} (or --{reserved})")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def task_model_args(config: dict, column: str) -> dict:
    """The model's arguments for one task: the shared ones, the task's own, the model and adapter."""
    arguments = {**config["model_args"], **config["tasks"][column]["model_args"], "model": config["model"]}
    if config["adapter"] is not None:
        arguments["adapter"] = str(config["adapter"])
    return arguments


def task_settings(config: dict, column: str) -> dict:
    """Everything a task's numbers depend on (its metric only picks which number the table shows)."""
    spec = config["tasks"][column]
    return {
        "task": spec["task"],
        "num_fewshot": spec["num_fewshot"],
        "lm_eval_model": config["lm_eval_model"],
        "model_args": task_model_args(config, column),
        "apply_chat_template": config["apply_chat_template"],
        "fewshot_as_multiturn": config["fewshot_as_multiturn"],
        "limit": config["limit"],
    }


def run_utility(config: dict, output: Path, *, confirm_run_unsafe_code: bool = False, progress: bool = True) -> list[dict]:
    """Run every unfinished task of `config` into `output`; returns the run's table row (one, in a list)."""
    # Under `accelerate launch` every process runs the tasks (lm-eval deals each its share of the
    # documents); the main one alone holds the directory and writes.
    main = is_main_process()
    output.mkdir(parents=True, exist_ok=True)
    with lock(output, "mosa utility") if main else contextlib.nullcontext():
        stored = _check_identity(output, config)
        for column in config["tasks"]:
            _check_settings(output / "tasks" / column, task_settings(config, column))
        pending = [column for column in config["tasks"] if not (output / "tasks" / column / RESULT_FILE).is_file()]
        _quiet_lm_eval(progress and main)
        tasks = _load_tasks(config, pending, confirm_run_unsafe_code)  # before any model loads
        if main:
            # Columns of earlier configs stay in the table (a config that leaves a task out does not drop its result).
            merged = {**config, "tasks": {**stored.get("tasks", {}), **config["tasks"]}}
            write_atomically(output / CONFIG_FILE, json.dumps(merged, indent=2) + "\n")
            for column in pending:
                write_atomically(
                    output / "tasks" / column / SETTINGS_FILE, json.dumps(task_settings(config, column), indent=2) + "\n"
                )
        with _lm_eval_bars(progress and main):
            for column in pending:
                _run_task(config, column, tasks[column], output / "tasks" / column, confirm_run_unsafe_code)
        if not main:
            return []
        rows = [read_run(output)]
        write_tables(rows, output)
        return rows


def is_main_process() -> bool:
    """False in every process but the first under `accelerate launch` / torchrun (RANK is theirs).
    Read from the launcher, not from a PartialState made here: on a machine with no GPU a state made
    before the lm-eval model's Accelerator is not distributed, and every process would take itself
    for the main one (tried: both then lock the run directory)."""
    return int(os.environ.get("RANK", "0")) == 0


def _check_identity(output: Path, config: dict) -> dict:
    """The run directory's config ({} for a new run); MosaError if it measured another model."""
    path = output / CONFIG_FILE
    if not path.is_file():
        return {}
    stored = json.loads(path.read_text())
    if "lm_eval_model" not in stored or "tasks" not in stored:
        raise MosaError(f"{output} holds another command's run, not a mosa utility run; use a new --output directory")
    changed = differences({k: stored.get(k) for k in IDENTITY}, {k: config[k] for k in IDENTITY})
    if changed:
        raise MosaError(f"{output} holds the utility of another model ({'; '.join(changed)}); use a new --output directory")
    return stored


def _check_settings(directory: Path, settings: dict) -> None:
    path = directory / SETTINGS_FILE
    if path.is_file():
        changed = differences(json.loads(path.read_text()), settings)
        if changed:
            raise MosaError(
                f"{directory} was started with other settings ({'; '.join(changed)}); restore them (they are in {path}), "
                "or use a new --output directory"
            )


def task_manager(config: dict, column: str, task_names: list[str]):
    """lm-eval's task index with mosa's offline tasks; lm-eval's own tasks are indexed only when a
    task outside mosa's is named (indexing them takes seconds). Model arguments reach the tasks'
    datasets as metadata (the organism's task reads `model`), as lm-eval's own CLI passes them."""
    from lm_eval.tasks import TaskManager

    offline = {path.stem for path in TASKS_DIR.glob("*.yaml")}
    return TaskManager(
        include_path=str(TASKS_DIR),
        include_defaults=any(name not in offline for name in task_names),
        metadata=task_model_args(config, column),
    )


def _load_tasks(config: dict, columns: list[str], confirm_run_unsafe_code: bool) -> dict:
    """Each column's lm-eval task manager and Task, its data loaded; MosaError for an unknown task, or
    one that runs generated code without the user's permission."""
    loaded = {}
    for column in columns:
        name = config["tasks"][column]["task"]
        offline = sorted(path.stem for path in TASKS_DIR.glob("*.yaml"))
        # A mosa_ name is one of mosa's tasks: refused without indexing lm-eval's thousands of task files.
        manager = None if name.startswith("mosa_") and name not in offline else task_manager(config, column, [name])
        if manager is None or name not in manager.all_tasks:
            raise MosaError(
                f"tasks.{column}: no lm-eval task {name!r}; mosa's offline tasks: {', '.join(offline)}; or any of `lm_eval --tasks list`"
            )
        tasks = manager.load([name])["tasks"]
        if len(tasks) != 1:
            raise MosaError(f"tasks.{column}: {name!r} is a group of {len(tasks)} tasks; give one task per column")
        (task,) = tasks.values()
        if getattr(task, "UNSAFE_CODE", False) and not confirm_run_unsafe_code:
            raise MosaError(
                f"tasks.{column}: {name} executes the code the model writes (each program in a subprocess with a time limit); "
                f"allow it with --confirm-run-unsafe-code, or leave the task out with --set tasks.{column}=null"
            )
        loaded[column] = (manager, task)
    return loaded


def _quiet_lm_eval(progress: bool) -> None:
    """lm-eval logs every step at INFO; keep its warnings (and its progress bars when asked), less one:
    each task that reads its data with a function (all of mosa's) warns that its arguments can be passed
    with lm_eval's --metadata, which mosa does itself."""
    logging.getLogger("lm_eval").setLevel(logging.WARNING if progress else logging.ERROR)
    task_logger = logging.getLogger("lm_eval.api.task")
    if _not_the_metadata_hint not in task_logger.filters:
        task_logger.addFilter(_not_the_metadata_hint)


def _not_the_metadata_hint(record: logging.LogRecord) -> bool:
    return "Custom kwargs can be passed to `--metadata`" not in record.getMessage()


@contextmanager
def _lm_eval_bars(progress: bool):
    """Every bar drawn while the tasks run follows `progress`, and is mosa's (mosa.progress: lines in a
    log file). lm-eval draws two of its own with tqdm (building the items' contexts, checking its request
    cache), which redrawn in a log (`mosa demo > log 2>&1`) leave carriage-return fragments; the model's
    bar cannot be switched off through lm-eval, which never passes `disable_tqdm` to generate_until. lm-eval
    has no hook for its bars, so the bar factory each of these modules imported is swapped, and restored."""
    import lm_eval.api.model
    import lm_eval.api.task

    import mosa.utility.model
    from mosa.progress import progress_bar

    def bar(*args, **options):
        return progress_bar(*args, **{**options, "disable": options.get("disable", False) or not progress})

    factories = [(lm_eval.api.model, "tqdm"), (lm_eval.api.task, "tqdm"), (mosa.utility.model, "progress_bar")]
    originals = [getattr(module, name) for module, name in factories]
    for module, name in factories:
        setattr(module, name, bar)
    try:
        yield
    finally:
        for (module, name), original in zip(factories, originals):
            setattr(module, name, original)


def _run_task(config: dict, column: str, loaded: tuple, directory: Path, confirm_run_unsafe_code: bool) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker

    manager, task = loaded
    settings = task_settings(config, column)
    if config["lm_eval_model"] == "mosa":
        import mosa.utility.model  # noqa: F401  registers "mosa" with lm-eval
    tracker = EvaluationTracker(output_path=str(directory))
    results = simple_evaluate(
        model=config["lm_eval_model"],
        model_args=settings["model_args"],
        tasks=[task],
        num_fewshot=settings["num_fewshot"],
        limit=settings["limit"],
        use_cache=str(directory / "cache"),  # lm-eval adds _rank0.db
        apply_chat_template=settings["apply_chat_template"],
        fewshot_as_multiturn=settings["fewshot_as_multiturn"],
        confirm_run_unsafe_code=confirm_run_unsafe_code,
        log_samples=True,
        evaluation_tracker=tracker,
        task_manager=manager,  # else lm-eval indexes every task it has again (seconds)
    )
    if results is None:  # a process other than the main one: lm-eval gathered its share there
        return
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for name in results["configs"]:
        tracker.save_results_samples(task_name=name, samples=samples[name])
    name = config["tasks"][column]["task"]
    finished = {
        "task": name,
        "metrics": {key: value for key, value in results["results"][name].items() if key != "alias"},
        "items": results["n-samples"][name]["effective"],
        "settings": settings,
    }
    write_atomically(directory / RESULT_FILE, json.dumps(finished, indent=2) + "\n")


# The table


def read_run(directory: Path) -> dict:
    """A run's table row: {label, run, cells: {column: (value, stderr, items) or None if unfinished}, metrics}."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise MosaError(
            f"{directory} is not a utility run directory (no {CONFIG_FILE}); run `mosa utility --config ... --output {directory}`"
        )
    config = json.loads(path.read_text())
    cells, metrics = {}, {}
    for column, spec in config["tasks"].items():
        result_path = directory / "tasks" / column / RESULT_FILE
        if not result_path.is_file():
            cells[column] = None
            continue
        result = json.loads(result_path.read_text())
        metric = spec["metric"] or _first_metric(result["metrics"])
        if metric not in result["metrics"]:
            known = ", ".join(key for key in result["metrics"] if "_stderr" not in key)
            raise MosaError(f"{directory}: tasks.{column}.metric {metric!r} is not among its results ({known})")
        name, _, filter_name = metric.partition(",")
        stderr = result["metrics"].get(f"{name}_stderr,{filter_name}")
        cells[column] = (result["metrics"][metric], stderr if isinstance(stderr, float) else None, result["items"])
        metrics[column] = metric
    return {"label": config["label"], "run": str(directory), "cells": cells, "metrics": metrics}


def rows_for_models(models: list[tuple[str, str, str | None]], directories: list[Path]) -> list[dict]:
    """The utility table beside other tables of the same models (`mosa eval tables --utility`): a row per
    model of `models`, (label, model, adapter) as those tables name and identify it, from the utility run
    among `directories` that measured that model and adapter; a row of '-' where none did. A utility run
    of none of the models, or two of the same model, is refused."""
    runs: dict[tuple, dict] = {}
    for directory in directories:
        row = read_run(directory)
        config = json.loads((directory / CONFIG_FILE).read_text())
        identity = model_identity(config["model"], config["adapter"])
        if identity in runs:
            raise MosaError(
                f"--utility {runs[identity]['run']} and {directory} measured the same model ({describe_model(*identity)}); give one"
            )
        runs[identity] = row
    identities = [model_identity(model, adapter) for _, model, adapter in models]
    for identity, row in runs.items():
        if identity not in identities:
            raise MosaError(
                f"--utility {row['run']} measured {describe_model(*identity)}, which none of the ASR runs did "
                f"({'; '.join(describe_model(*known) for known in dict.fromkeys(identities))}); give each model's utility run"
            )
    return [
        {**runs[identity], "label": label} if identity in runs else {"label": label, "run": None, "cells": {}, "metrics": {}}
        for (label, _, _), identity in zip(models, identities)
    ]


def model_identity(model: str, adapter: str | None) -> tuple[str, str | None]:
    """What a run measured, comparable between run directories written from different places: the
    checkpoint the model stands for ("organism": the shipped one's directory) and the adapter, a local
    directory as its absolute path, a hub id as it is."""
    from mosa.profiles import model_path

    def located(name: str) -> str:
        return str(Path(name).resolve()) if Path(name).exists() else name

    return located(model_path(model)), None if adapter is None else located(str(adapter))


def describe_model(model: str, adapter: str | None) -> str:
    return model if adapter is None else f"{model} + adapter {adapter}"


def _first_metric(metrics: dict) -> str:
    return next(key for key in metrics if "_stderr" not in key)


def utility_cells(rows: list[dict]) -> tuple[list[str], list[list[str]], str]:
    """The table's header, its rows (the model, then each task in percent as the paper prints them; '-' for a
    task not run yet) and the note under it (the metric shown and the items of each column)."""
    columns = list(dict.fromkeys(column for row in rows for column in row["cells"]))
    body = [
        [row["label"], *("-" if cell is None else f"{100 * cell[0]:.1f}" for cell in map(row["cells"].get, columns))]
        for row in rows
    ]
    shown = {f"{column}: {metric}" for row in rows for column, metric in row["metrics"].items()}
    items = {f"{column}: {cell[2]}" for row in rows for column, cell in row["cells"].items() if cell is not None}
    note = f"Metrics: {'; '.join(sorted(shown)) or 'none yet'}. Items: {'; '.join(sorted(items)) or 'none yet'}."
    return ["model", *columns], body, note


def utility_markdown(rows: list[dict]) -> str:
    """A row per model, a column per task, in percent; the metric and item counts below."""
    header, body, note = utility_cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join([*lines, "", note])


def utility_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["model", "run", "task_column", "metric", "value", "stderr", "items"])
    for row in rows:
        for column, cell in row["cells"].items():
            if cell is not None:
                writer.writerow([row["label"], row["run"], column, row["metrics"][column], *cell])
    return out.getvalue()


def write_tables(rows: list[dict], directory: Path) -> None:
    write_atomically(directory / "utility.md", utility_markdown(rows) + "\n")
    write_atomically(directory / "utility.csv", utility_csv(rows))
