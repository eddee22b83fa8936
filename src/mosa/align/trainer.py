"""Alignment training: direct gradient ascent on a training objective (MOSA by default; the others
in mosa.align.objectives, chosen by `objective`), with LoRA (or full fine-tuning) and a reference
that is the same model with its adapter switched off (no second copy of the weights).

    lm = load_model(...)
    metrics = train_mosa(lm, prompts, MosaConfig(window=(8, 24)), output_dir)
    metrics = train_mosa(lm, pairs, MosaConfig(objective="a2d"), output_dir, benign_prompts=answers)

Each step: the objective computes its figures on a batch of prompts (MOSA: the chat-rendered
prompts followed by `response_length` masks go through the policy once, and through the reference
without gradients; one safe and one harmful sentence are drawn), and the batch mean of its
"objective" is maximised. Optional (not in the paper): a KL penalty on benign prompts, so that the
policy keeps the reference's answers where it should not refuse.

Under `accelerate launch` every process takes its slice of each global batch and DDP averages the
gradients, so N processes with batch_size B train exactly as one process with batch_size N*B.

The run directory holds config.json, inputs.json (what the run is made of: the model's content
fingerprint, the prompt sets' records, the tokenised sentences), metrics.jsonl (one record per
optimiser step), monitor.json, reward_curve.png and checkpoints written atomically; `resume=True`
continues from the last checkpoint, refuses other inputs, and ends with the same weights as an
uninterrupted run. A finished run also writes `adapter/` (peft format; LoRA runs) and, with
`save_merged` or full fine-tuning, `merged/`, a standard checkpoint with its tokenizer that
`mosa.models.load_model` reads; both carry a copy of inputs.json, which `mosa eval` reads to refuse
benchmarks that share prompts with the training set.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from mosa.align.objective import KL_REDUCTIONS, check_window, kl_divergence
from mosa.align.objectives import Batch, make_objective, masked_canvas, response_logits  # noqa: F401 (masked_canvas: benchmarks)
from mosa.align.plots import plot_metrics
from mosa.align.sentences import NATURAL_HARMFUL, NATURAL_SAFE
from mosa.data import PromptSet
from mosa.errors import MosaError
from mosa.models import DiffusionLM
from mosa.paths import check_output_dir, write_atomically
from mosa.progress import progress_bar
from mosa.provenance import INPUTS_FILE, check_inputs

FINETUNE_MODES = ("lora", "full")
# Default LoRA targets, by the names of the linear layers the loaded model has: attention's four
# projections (the paper gives r and alpha, not the modules). The first set the model has in full wins.
LORA_TARGETS = (
    ("q_proj", "k_proj", "v_proj", "o_proj"),  # Llama and Qwen2 layouts: LLaDA, MMaDA, Dream loaded natively; Dream's own code
    ("q_proj", "k_proj", "v_proj", "attn_out"),  # LLaDA's and MMaDA's own code (--trust-remote-code)
)


@dataclass
class MosaConfig:
    # The training objective (mosa.align.objectives.OBJECTIVES: mosa, a2d, primed-mosa) and its own
    # options; every field below is shared (a2d reads no sentence, window or beta).
    objective: str = "mosa"
    objective_options: dict = field(default_factory=dict)
    response_length: int = 32
    window: tuple[int, int] = (8, 24)
    fit: str = "inside"
    beta: float = 0.05
    kl_reduction: str = "sum"
    harmful_floor: float | None = None  # not in the paper; None keeps the paper's unbounded term
    # Not in the paper: beta for a KL(policy || reference) on benign prompts (0 = off). Needs
    # benign prompts (train_mosa's `benign_prompts`).
    benign_beta: float = 0.0
    lr: float = 5e-5
    max_grad_norm: float = 0.01
    batch_size: int = 4  # per process
    grad_accum: int = 1
    epochs: int = 1
    max_steps: int | None = None
    finetune: str = "lora"  # "full" trains every weight and keeps a frozen copy as the reference
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None  # None: LORA_TARGETS, as the loaded model names them
    gradient_checkpointing: bool = False
    # Natural English (mosa.align.sentences); a model with its own vocabulary sets its own.
    safe_sentences: tuple[str, ...] = NATURAL_SAFE
    harmful_sentences: tuple[str, ...] = NATURAL_HARMFUL
    save_every: int = 50
    save_merged: bool = False  # LoRA runs: also write merged/, the adapter folded into the weights
    # The behaviour monitor (when one is given) runs before training, every `monitor_every` steps
    # (0 = only before and after) and at the end. A run must not win by degenerating: a "coherent"
    # share below `min_coherent` stops it and declares it failed (its outputs are kept).
    monitor_every: int = 0
    min_coherent: float = 0.9
    seed: int = 0

    def validate(self) -> None:
        """Every setting that can be checked without the model (the sentences need its tokenizer:
        `sentence_ids`)."""
        if self.finetune not in FINETUNE_MODES:
            raise MosaError(f"finetune={self.finetune!r} must be one of {FINETUNE_MODES}")
        if self.kl_reduction not in KL_REDUCTIONS:
            raise MosaError(f"kl_reduction={self.kl_reduction!r} must be one of {KL_REDUCTIONS}")
        for name in ("response_length", "batch_size", "grad_accum", "epochs", "save_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise MosaError(f"{name}={getattr(self, name)!r} must be a positive integer")
        for name in ("beta", "benign_beta", "lr", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise MosaError(f"{name}={getattr(self, name)!r} must be >= 0")
        if len(self.window) != 2 or not all(isinstance(bound, int) for bound in self.window):
            raise MosaError(f"window={list(self.window)!r} must be two positions [START, END]")
        check_window(self.window, self.response_length, self.fit)
        if not isinstance(self.objective_options, dict):
            raise MosaError(f"objective_options={self.objective_options!r} must be a mapping of option: value")
        make_objective(self)  # an unknown objective or option is refused here, before any model loads


def lora_targets(module: torch.nn.Module, configured: tuple[str, ...] | None) -> tuple[str, ...]:
    """The LoRA target names for `module`: the configured ones, each of which must name a linear
    layer (peft itself only complains when none does), or the first set of LORA_TARGETS it has."""
    linear = [name for name, part in module.named_modules() if isinstance(part, torch.nn.Linear)]
    available = ", ".join(sorted({name.rsplit(".", 1)[-1] for name in linear}))
    if configured is None:
        for targets in LORA_TARGETS:
            if all(any(name.endswith(f".{target}") or name == target for name in linear) for target in targets):
                return targets
        raise MosaError(
            f"no default LoRA targets for {type(module).__name__} (its linear layers: {available}); set target_modules"
        )
    unmatched = [target for target in configured if not any(name == target or name.endswith(f".{target}") for name in linear)]
    if unmatched:
        raise MosaError(
            f"LoRA target_modules {unmatched} match no linear layer of {type(module).__name__}; its linear layers: {available}"
        )
    return tuple(configured)


def attach_lora(lm: DiffusionLM, config: MosaConfig) -> None:
    """Wrap lm.module with a fresh LoRA adapter (peft) on config.target_modules (resolved:
    `lora_targets`); only adapter weights are trainable."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
    )
    with torch.random.fork_rng():  # the adapter's initialisation depends on the seed only
        torch.manual_seed(config.seed)
        lm.module = get_peft_model(lm.module, lora)


def make_reference(lm: DiffusionLM, config: MosaConfig) -> torch.nn.Module | None:
    """LoRA: attach the adapter; the reference is the same weights with it switched off (None).
    Full fine-tuning: every weight trains, so the reference is a frozen copy (twice the weights)."""
    if config.finetune == "lora":
        attach_lora(lm, config)
        return None
    return copy.deepcopy(lm.module).requires_grad_(False).eval()


def enable_gradient_checkpointing(module: torch.nn.Module) -> None:
    """Recompute activations in the backward pass: Hugging Face models through
    `gradient_checkpointing_enable`, LLaDA's remote code through its activation-checkpointing switch."""
    for part in module.modules():
        if getattr(part, "supports_gradient_checkpointing", False):
            if hasattr(part, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
                part.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                part.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            return
        if hasattr(part, "set_activation_checkpointing"):
            part.set_activation_checkpointing("whole_layer")
            return
    raise MosaError(f"{type(module).__name__} offers no gradient checkpointing; set gradient_checkpointing: false")


def check_run_directory(output_dir: Path, resume: bool) -> None:
    """Refuse, before anything loads, a run directory that cannot be written, one that holds another
    run (unless resuming it) and, when resuming, one without a checkpoint."""
    check_output_dir(output_dir)
    if resume and latest_checkpoint(output_dir) is None:
        raise MosaError(f"no checkpoint to resume in {output_dir}; start without --resume")
    if not resume and output_dir.is_dir() and any(output_dir.iterdir()):
        raise MosaError(f"{output_dir} is not empty; pass resume (--resume) to continue it or choose a new directory")


def train_mosa(
    lm: DiffusionLM,
    prompts: PromptSet | list[str],
    config: MosaConfig,
    output_dir: str | Path,
    *,
    benign_prompts: PromptSet | list[str] | None = None,
    inputs: dict | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    monitor: Callable[[DiffusionLM], dict] | None = None,
) -> list[dict]:
    """Train lm on config.objective (LoRA attached here, or all weights); returns the metrics of
    every step this process ran.

    `prompts` and `benign_prompts`: resolved prompt sets (mosa.data.resolve_prompts), or plain lists;
    the a2d objective needs sets whose examples carry their responses (`target`).
    `inputs`: what else the run is made of, for inputs.json (e.g. {"model": fingerprint_model(path)});
    the objective with its options, the prompt sets' records and what the objective tokenised are
    added here, and a resumed run must be made of the same. `stop_after` ends the run after that many optimiser steps (as if it were
    killed there). `monitor`, a plain callable lm -> {name: figure}, measures behaviour before
    training, every `config.monitor_every` steps and at the end (e.g. refusal, benign utility,
    coherent share); all go to monitor.json. A coherent share below `config.min_coherent` stops the
    run: its reward curve and adapter are written as it stands, then `DegenerateRun` is raised.
    """
    from accelerate import Accelerator

    output_dir = Path(output_dir)
    config.validate()
    prompt_set = prompts if isinstance(prompts, PromptSet) else PromptSet.given(prompts)
    benign_set = benign_prompts
    if benign_set is not None and not isinstance(benign_set, PromptSet):
        benign_set = PromptSet.given(benign_set, "benign")
    if not prompt_set.examples:
        raise MosaError("no training prompts; give a dataset with at least one prompt")
    if config.benign_beta > 0 and not benign_set:
        raise MosaError("benign_beta > 0 needs benign prompts (benign_prompts: a dataset, or organism-utility)")
    objective = make_objective(config)
    data_record = objective.check_data(prompt_set, benign_set)
    examples = list(prompt_set.examples)
    benign_examples = None if benign_set is None else list(benign_set.examples)
    check_run_directory(output_dir, resume)
    tokenised = objective.prepare(lm.tokenizer, lm.eos_id, config)
    for prompt_set_used in (prompt_set, benign_set or []):  # refuse up front what cannot fit, not at step 500
        lm.check_prompts([example.prompt for example in prompt_set_used], config.response_length)
    if config.finetune == "lora":  # the targets the run really uses, in config.json
        config = replace(config, target_modules=lora_targets(lm.module, config.target_modules))
    inputs = {
        **(inputs or {}),
        "objective": {"name": config.objective, "options": dict(config.objective_options)},
        "prompts": prompt_set.record(),
        "benign_prompts": None if benign_set is None else benign_set.record(),
        **data_record,
        **tokenised,
    }

    device = lm.device
    accelerator = Accelerator(cpu=device.type == "cpu")
    main = accelerator.is_main_process
    reference = make_reference(lm, config)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(lm.module)
    module = lm.module.to(accelerator.device)
    policy = accelerator.prepare_model(module)  # DDP under accelerate launch, the module itself otherwise
    # Prepared, like the model, so that accelerate's save_state and load_state keep its state.
    optimizer = accelerator.prepare_optimizer(
        torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=config.lr)
    )
    training = TrainingProgress(accelerator.num_processes)
    accelerator.register_for_checkpointing(training)
    checkpoint_trainable_weights_only(accelerator)
    per_step = config.batch_size * accelerator.num_processes * config.grad_accum
    steps_per_epoch = math.ceil(len(examples) / per_step)
    total_steps = min(config.max_steps or steps_per_epoch * config.epochs, steps_per_epoch * config.epochs)

    accelerator.wait_for_everyone()  # no process may create output_dir before every one has checked it
    metrics_path = output_dir / "metrics.jsonl"
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        check_inputs(
            output_dir,
            inputs,
            fix="resume it with its own model, prompts and sentences, or start a new --output directory",
        )
        write_atomically(output_dir / "config.json", json.dumps(asdict(config), indent=2))
    if resume:  # after the inputs check: a run on another model is refused as such, before its weights are read
        accelerator.load_state(
            latest_checkpoint(output_dir), strict=False
        )  # frozen weights are not saved: check_checkpoint_weights
    step = training.step
    if main:
        keep_metrics_up_to(metrics_path, step)
    monitoring = Monitoring(monitor, output_dir, config, enabled=main)
    if not resume:
        monitoring.measure("before", lm)
    accelerator.wait_for_everyone()

    records, failure = [], None
    module.train()
    bar = progress_bar(total=total_steps, initial=step, desc=config.objective, disable=not (progress and main))
    names = (*objective.metrics, "kl_benign")
    while step < total_steps and (stop_after is None or len(records) < stop_after):
        started = time.perf_counter()
        draw = random.Random(f"{config.seed}-{step}")  # every step's draws depend only on (seed, step)
        optimizer.zero_grad()
        totals = torch.zeros(len(names), device=accelerator.device)  # the objective's figures, then kl_benign
        for micro in range(config.grad_accum):
            dealt = dict(step=step, micro=micro, processes=accelerator.num_processes, rank=accelerator.process_index)
            batch = Batch(
                examples=batch_prompts(examples, config, **dealt),
                benign=None if benign_examples is None else batch_prompts(benign_examples, config, **dealt),
                draw=draw,
                rank=accelerator.process_index,
                processes=accelerator.num_processes,
            )
            # Gradients are averaged across processes once per optimiser step, not per micro-batch.
            syncing = micro == config.grad_accum - 1
            with nullcontext() if syncing else accelerator.no_sync(policy):
                figures = objective.terms(lm, policy, reference, batch, config)
                maximised, kl_benign = figures["objective"].mean(), torch.zeros((), device=accelerator.device)
                if config.benign_beta > 0:
                    benign = [example.prompt for example in batch.benign]
                    kl_benign = benign_kl(lm, policy, reference, benign, config).mean()
                    maximised = maximised - config.benign_beta * kl_benign
                loss = -maximised / config.grad_accum
                if not torch.isfinite(loss):
                    raise MosaError(
                        f"the loss became {loss.item()} at step {step}; stopped. The last good checkpoint is in {output_dir} "
                        "(resume from it with a lower lr or a harmful floor)"
                    )
                loss.backward()
            values = [maximised, *(figures[name].mean() for name in objective.metrics[1:]), kl_benign]
            totals += torch.stack([v.detach().float() for v in values]) / config.grad_accum
        grad_norm = accelerator.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
        optimizer.step()
        step += 1
        totals = accelerator.reduce(totals, reduction="mean")  # the global batch's means
        record = {"step": step, **{name: round(value, 6) for name, value in zip(names, totals.tolist())}}
        if config.benign_beta == 0:
            del record["kl_benign"]
        record.update(
            grad_norm=round(float(grad_norm), 6), lr=config.lr, prompts_per_s=round(per_step / (time.perf_counter() - started), 3)
        )
        if main:
            with open(metrics_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        records.append(record)
        bar.set_postfix({name: f"{record[name]:.3f}" for name in objective.shown}, refresh=False)  # shown by the update
        bar.update(1)
        if step % config.save_every == 0 or step == total_steps:
            training.step = step
            save_checkpoint(accelerator, output_dir, step)
        if config.monitor_every and step % config.monitor_every == 0 and step < total_steps:
            failure = monitoring.measure(step, lm)
            if failure is not None:
                break
    bar.close()
    module.eval()
    if failure is None and step == total_steps:
        failure = monitoring.measure("after", lm)
    # A run the monitor stopped keeps what it stopped with (curve, adapter), so that the failure can be examined.
    if failure is not None or step == total_steps:
        if main:
            plot_metrics(
                metrics_path, output_dir / "reward_curve.png", title=curve_title(config, failure), panels=objective.panels
            )
            save_final_model(lm, output_dir, config, inputs)
        accelerator.wait_for_everyone()
    if failure is not None:
        raise DegenerateRun(failure, monitoring.path)
    return records


def curve_title(config: MosaConfig, failure: dict | None) -> str:
    """The training curve's title: which run it is (the objective's own: method, window, beta) and,
    when the monitor stopped it, why."""
    title = make_objective(config).title(config)
    if failure is not None:
        title += (
            f"\nstopped {failure_moment(failure)}: degenerate ({failure['value']:.1%} coherent, "
            f"{failure['setting']} {failure['floor']:.0%})"
        )
    return title


def failure_moment(failure: dict) -> str:
    return "after training" if failure["when"] == "after" else f"at step {failure['when']}"


class DegenerateRun(MosaError):
    """The behaviour monitor found the run degenerate; `failure` says when and by how much
    (as monitor.json does). The run's metrics, reward curve and adapter are kept."""

    def __init__(self, failure: dict, report: Path):
        self.failure = failure
        super().__init__(
            f"the run degenerated: {failure['value']:.1%} of responses are coherent {failure_moment(failure)} "
            f"({failure['setting']} {failure['floor']:.0%}); its reward is not evidence of alignment. See {report}"
        )


class Monitoring:
    """Runs the behaviour monitor on the main process and keeps monitor.json: before, during, after."""

    def __init__(self, monitor, output_dir: Path, config: MosaConfig, enabled: bool):
        self.monitor, self.path, self.config = monitor, output_dir / "monitor.json", config
        self.enabled = enabled and monitor is not None

    def measure(self, when, lm: DiffusionLM) -> dict | None:
        """Measure and record; returns the failure (None when the run is not degenerate)."""
        if not self.enabled:
            return None
        was_training = lm.module.training
        lm.module.eval()
        # The monitor may sample; forking the random state keeps training's stream (dropout) as if it
        # had not run, so a resumed run stays bitwise identical whether or not it measured in between.
        with torch.no_grad(), torch.random.fork_rng(devices=[] if lm.device.type == "cpu" else [lm.device]):
            figures = self.monitor(lm)
        lm.module.train(was_training)
        report = json.loads(self.path.read_text()) if self.path.is_file() else {"before": None, "during": []}
        if when == "before":
            report = {"before": figures, "during": []}
        elif when == "after":
            report["after"] = figures
        else:
            report["during"] = [entry for entry in report["during"] if entry["step"] < when] + [{"step": when, **figures}]
        coherent = figures.get("coherent")
        degenerate = when != "before" and coherent is not None and coherent < self.config.min_coherent
        report["degenerate"] = degenerate
        failure = {
            "when": when,
            "figure": "coherent",
            "value": coherent,
            "setting": "min_coherent",
            "floor": self.config.min_coherent,
        }
        report["failure"] = failure if degenerate else None
        write_atomically(self.path, json.dumps(report, indent=2))
        return report["failure"]


def batch_prompts(prompts: list, config: MosaConfig, step: int, micro: int, processes: int = 1, rank: int = 0) -> list:
    """This process's prompts (or examples) for one micro-batch: a slice of the global micro-batch, taken from a
    seeded permutation per epoch (wrapping around at its end), so that a resumed run sees the batches
    an uninterrupted one would, and N processes see together what one process with N times the batch
    size sees."""
    global_batch = config.batch_size * processes
    per_step = global_batch * config.grad_accum
    steps_per_epoch = math.ceil(len(prompts) / per_step)
    epoch, index = divmod(step, steps_per_epoch)
    order = list(range(len(prompts)))
    random.Random(f"{config.seed}-epoch-{epoch}").shuffle(order)
    start = index * per_step + micro * global_batch + rank * config.batch_size
    return [prompts[order[(start + offset) % len(order)]] for offset in range(config.batch_size)]


def benign_kl(lm: DiffusionLM, policy, reference, prompts: list[str], config: MosaConfig) -> torch.Tensor:
    """KL(policy || reference) over the response positions of benign prompts, B."""
    policy_logits, reference_logits = response_logits(lm, policy, reference, prompts, config.response_length)
    return kl_divergence(
        torch.log_softmax(policy_logits.float(), -1), torch.log_softmax(reference_logits.float(), -1), config.kl_reduction
    )


# Checkpoints: accelerate's save_state writes a directory (the trainable weights, the optimizer, each
# process's RNG states, TrainingProgress), every process taking part; load_state reads it back.
#
# Atomicity: save_state writes into .checkpoint-STEP.partial, which is renamed to checkpoint-STEP once
# every process has finished writing; a resume loads the checkpoint-STEP of the highest STEP, and the
# older one is removed only after the rename. A rename is atomic, so a kill at any moment leaves the
# new checkpoint whole or absent, never half-written under a checkpoint's name. A pointer file moved
# after each save would keep the same guarantee, but as a second record of which directory is whole,
# beside half-written directories that look like checkpoints.
CHECKPOINT_PREFIX = "checkpoint-"


class TrainingProgress:
    """What a checkpoint holds beyond accelerate's own state (registered with
    `register_for_checkpointing`): the optimiser steps done, from which every later batch and sentence
    draw follows (`batch_prompts`), and the number of processes, which decides how prompts are dealt
    out; a run resumed on another number would not train as the uninterrupted one, so it is refused."""

    def __init__(self, processes: int):
        self.step, self.processes = 0, processes

    def state_dict(self) -> dict:
        return {"step": self.step, "processes": self.processes}

    def load_state_dict(self, state: dict) -> None:
        if state["processes"] != self.processes:
            raise MosaError(
                f"the checkpoint was written by {state['processes']} process(es), this run has {self.processes}; "
                "resume it on as many (accelerate launch --num_processes), or its batches would differ"
            )
        self.step = state["step"]


def trainable_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: parameter.detach() for name, parameter in module.named_parameters() if parameter.requires_grad}


def checkpoint_trainable_weights_only(accelerator) -> None:
    """Make save_state write only the trainable weights (the adapter; every weight in full fine-tuning):
    the frozen ones are the model's own files, whose fingerprint a resume checks (inputs.json), and a
    LoRA run on LLaDA-8B would otherwise write 16 GB per checkpoint. They are named as in the unwrapped
    module, so that a checkpoint reads the same whether DDP wrapped the model or not."""
    from accelerate.utils import SAFE_WEIGHTS_NAME

    def keep_trainable(models: list, weights: list, _directory: str) -> None:
        weights[:] = [trainable_weights(accelerator.unwrap_model(model)) for model in models]

    def load_unwrapped(models: list, directory: str) -> None:
        models[:] = [accelerator.unwrap_model(model) for model in models]
        check_checkpoint_weights(models[0], Path(directory) / SAFE_WEIGHTS_NAME)

    accelerator.register_save_state_pre_hook(keep_trainable)
    accelerator.register_load_state_pre_hook(load_unwrapped)


def check_checkpoint_weights(module: torch.nn.Module, path: Path) -> None:
    """Refuse a checkpoint whose weights are not exactly the module's trainable ones (names and shapes):
    load_state runs with strict=False, since the frozen weights are not saved, and would otherwise load
    part of a checkpoint, or none of it, without a word after a change of finetune, lora_r or target_modules."""
    from safetensors import safe_open

    expected = {name: tuple(weight.shape) for name, weight in trainable_weights(module).items()}
    with safe_open(path, "pt") as stored:
        saved = {name: tuple(stored.get_slice(name).get_shape()) for name in stored.keys()}
    if saved != expected:
        differing = sorted(name for name in saved.keys() | expected.keys() if saved.get(name) != expected.get(name))
        raise MosaError(
            f"{path.parent} holds other trainable weights than this run ({len(differing)} differ, e.g. {differing[0]}); "
            "resume with the settings it was trained with (finetune, lora_r, target_modules)"
        )


def checkpoints(output_dir: Path) -> list[Path]:
    """The whole checkpoints in output_dir, oldest first: one, or two after a kill between a rename and the removal of the older."""
    found = [path for path in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*") if path.is_dir()]
    return sorted(found, key=lambda path: int(path.name.removeprefix(CHECKPOINT_PREFIX)))


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint a resume loads: the one of the latest step."""
    return (checkpoints(output_dir) or [None])[-1]


def save_checkpoint(accelerator, output_dir: Path, step: int) -> None:
    """Write checkpoint-STEP (every process takes part: each saves its own RNG states), then remove the older ones."""
    partial = output_dir / f".{CHECKPOINT_PREFIX}{step}.partial"
    if accelerator.is_main_process:
        for unfinished in output_dir.glob(f".{CHECKPOINT_PREFIX}*.partial"):  # left by a kill during an earlier save
            shutil.rmtree(unfinished)
    accelerator.wait_for_everyone()
    accelerator.save_state(partial)
    accelerator.wait_for_everyone()  # every process's files are written: the checkpoint is whole
    if accelerator.is_main_process:
        older = checkpoints(output_dir)
        partial.rename(output_dir / f"{CHECKPOINT_PREFIX}{step}")
        for checkpoint in older:
            shutil.rmtree(checkpoint)
    accelerator.wait_for_everyone()


def save_final_model(lm: DiffusionLM, output_dir: Path, config: MosaConfig, inputs: dict) -> None:
    """adapter/ (peft format) for LoRA runs; merged/ (a standard checkpoint with its tokenizer) for full
    fine-tuning, or for LoRA with save_merged, after which lm holds the merged weights. Each carries
    the run's inputs.json, so that an evaluation can tell which prompts it was trained on."""
    from mosa.models.build import save_model

    def put(name: str, write) -> None:
        partial, final = output_dir / f".{name}.partial", output_dir / name
        shutil.rmtree(partial, ignore_errors=True)
        write(partial)
        write_atomically(partial / INPUTS_FILE, json.dumps(inputs, indent=1, ensure_ascii=False) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)

    if config.finetune == "lora":
        put("adapter", lm.module.save_pretrained)
        if not config.save_merged:
            return
        lm.module = lm.module.merge_and_unload()
    put("merged", lambda path: save_model(lm, path))


def keep_metrics_up_to(path: Path, step: int) -> None:
    """On resume, drop records of steps after the checkpoint: they are run again, never twice."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    write_atomically(path, "".join(line + "\n" for line in kept))
