"""MOSA training: direct gradient ascent on the MOSA objective, with LoRA and a reference that is the
same model with its adapter switched off (no second copy of the weights).

    lm = load_model(...)
    metrics = train_mosa(lm, prompts, MosaConfig(window=(8, 24)), output_dir)

Each step: a batch of chat-rendered prompts followed by `response_length` masks goes through the
policy once (and through the reference, without gradients); one safe and one harmful sentence
are drawn; the objective's batch mean is maximised. The run directory holds metrics.jsonl (one
record per optimiser step), reward_curve.png and checkpoints written atomically; `resume=True` continues from the
last checkpoint and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mosa.align.objective import mosa_objective, window_offsets
from mosa.align.plots import plot_metrics
from mosa.errors import MosaError
from mosa.models import DiffusionLM
from mosa.paths import write_atomically

# Defaults when no sentence file is given. Safe sentences end with EOS (appended by the trainer).
DEFAULT_SAFE = (
    "therefore , i cannot answer this question .",
    "i am sorry , but i cannot assist with that .",
    "i cannot help with that request .",
)
# Affirmative and procedural openers, the phrases prefill attacks plant.
DEFAULT_HARMFUL = ("sure , here is how .", "step 1 :", "step 2 :", "the next step is", "after that , we")

CHECKPOINT_POINTER = "latest_checkpoint"


@dataclass
class MosaConfig:
    response_length: int = 32
    window: tuple[int, int] = (8, 24)
    fit: str = "inside"
    beta: float = 0.05
    kl_reduction: str = "sum"
    harmful_floor: float | None = None  # not in the paper; None keeps the paper's unbounded term
    lr: float = 5e-5
    max_grad_norm: float = 0.01
    batch_size: int = 4
    grad_accum: int = 1
    epochs: int = 1
    max_steps: int | None = None
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    safe_sentences: tuple[str, ...] = DEFAULT_SAFE
    harmful_sentences: tuple[str, ...] = DEFAULT_HARMFUL
    save_every: int = 50
    # A run must not win by degenerating: when a monitor reports a "coherent" share below this at
    # the end, the run is declared failed (its outputs are kept for inspection).
    min_coherent: float = 0.9
    seed: int = 0


def attach_lora(lm: DiffusionLM, config: MosaConfig) -> None:
    """Wrap lm.module with a fresh LoRA adapter (peft); only adapter weights are trainable."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
    )
    with torch.random.fork_rng():  # the adapter's initialisation depends on the seed only
        torch.manual_seed(config.seed)
        lm.module = get_peft_model(lm.module, lora)


def sentence_ids(lm: DiffusionLM, sentences, with_eos: bool) -> list[torch.Tensor]:
    encoded = []
    for sentence in sentences:
        ids = lm.tokenizer(sentence, add_special_tokens=False)["input_ids"] + ([lm.eos_id] if with_eos else [])
        if not ids:
            raise MosaError(f"sentence {sentence!r} has no tokens")
        encoded.append(torch.tensor(ids))
    return encoded


def train_mosa(
    lm: DiffusionLM,
    prompts: list[str],
    config: MosaConfig,
    output_dir: str | Path,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    monitor: Callable[[DiffusionLM], dict] | None = None,
) -> list[dict]:
    """Train lm (LoRA attached here) on the MOSA objective; returns the metrics of every step run.

    `stop_after` ends the run after that many optimiser steps (as if it were killed there).
    `monitor`, a plain callable lm -> {name: figure}, measures behaviour before training and at
    the end (e.g. refusal, benign utility, coherent share); both go to monitor.json.
    """
    output_dir = Path(output_dir)
    if not prompts:
        raise MosaError("no training prompts; give a dataset with at least one prompt")
    safe = sentence_ids(lm, config.safe_sentences, with_eos=True)
    harmful = sentence_ids(lm, config.harmful_sentences, with_eos=False)
    for ids in safe + harmful:  # refuse up front what cannot fit, not at step 500
        window_offsets(config.window, len(ids), config.response_length, config.fit)

    attach_lora(lm, config)
    module = lm.module
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=config.lr)
    steps_per_epoch = math.ceil(len(prompts) / (config.batch_size * config.grad_accum))
    total_steps = min(config.max_steps or steps_per_epoch * config.epochs, steps_per_epoch * config.epochs)

    step = 0
    if resume:
        step = load_checkpoint(output_dir, module, optimizer)
    elif output_dir.exists() and any(output_dir.iterdir()):
        raise MosaError(f"{output_dir} is not empty; pass resume (--resume) to continue it or choose a new directory")
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(output_dir / "config.json", json.dumps(asdict(config), indent=2))
    metrics_path = output_dir / "metrics.jsonl"
    keep_metrics_up_to(metrics_path, step)

    if monitor is not None and not resume:  # measured once, before the first update, kept on disk
        write_atomically(output_dir / "monitor.json", json.dumps({"before": run_monitor(monitor, lm)}, indent=2))
    records = []
    module.train()
    bar = tqdm(total=total_steps, initial=step, desc="mosa", disable=not progress)
    while step < total_steps and (stop_after is None or len(records) < stop_after):
        started = time.perf_counter()
        draw = random.Random(f"{config.seed}-{step}")  # every step's draws depend only on (seed, step)
        optimizer.zero_grad()
        totals = {"objective": 0.0, "reward": 0.0, "R_pos": 0.0, "R_neg": 0.0, "kl": 0.0}
        for micro in range(config.grad_accum):
            batch = batch_prompts(prompts, config, step, micro)
            safe_ids, harmful_ids = draw.choice(safe), draw.choice(harmful)
            terms = step_terms(lm, batch, safe_ids, harmful_ids, config)
            loss = -terms.objective.mean() / config.grad_accum
            if not torch.isfinite(loss):
                raise MosaError(
                    f"the loss became {loss.item()} at step {step}; stopped. The last good checkpoint is in {output_dir} "
                    "(resume from it with a lower lr or a harmful floor)"
                )
            loss.backward()
            for name, value in (("objective", terms.objective), ("reward", terms.reward), ("R_pos", terms.safe),
                                ("R_neg", terms.harmful), ("kl", terms.kl)):
                totals[name] += value.mean().item() / config.grad_accum
        grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), config.max_grad_norm)
        optimizer.step()
        step += 1
        record = {"step": step, **{k: round(v, 6) for k, v in totals.items()}, "grad_norm": round(grad_norm.item(), 6),
                  "lr": config.lr, "prompts_per_s": round(config.batch_size * config.grad_accum / (time.perf_counter() - started), 3)}
        with open(metrics_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        records.append(record)
        bar.update(1)
        bar.set_postfix(reward=f"{record['reward']:.2f}", kl=f"{record['kl']:.3f}")
        if step % config.save_every == 0 or step == total_steps:
            save_checkpoint(output_dir, module, optimizer, step)
    bar.close()
    module.eval()
    plot_metrics(metrics_path, output_dir / "reward_curve.png",
                 title=f"MOSA, window {list(config.window)} of {config.response_length}, beta {config.beta}")
    if monitor is not None and step == total_steps:
        check_monitor(output_dir, run_monitor(monitor, lm), config)
    return records


def run_monitor(monitor, lm: DiffusionLM) -> dict:
    was_training = lm.module.training
    lm.module.eval()
    with torch.no_grad():
        figures = monitor(lm)
    lm.module.train(was_training)
    return figures


def check_monitor(output_dir: Path, after: dict, config: MosaConfig) -> None:
    """Record the monitor's figures after training; a run whose outputs degenerated is a failure
    and says so."""
    path = output_dir / "monitor.json"
    before = json.loads(path.read_text()).get("before") if path.is_file() else None
    coherent = after.get("coherent")
    failed = coherent is not None and coherent < config.min_coherent
    write_atomically(path, json.dumps({"before": before, "after": after, "degenerate": failed}, indent=2))
    if failed:
        raise MosaError(
            f"the run degenerated: {coherent:.1%} of responses are coherent after training (min_coherent "
            f"{config.min_coherent:.0%}); its reward is not evidence of alignment. See {path}"
        )


def batch_prompts(prompts: list[str], config: MosaConfig, step: int, micro: int) -> list[str]:
    """The prompts of one micro-batch: a seeded permutation per epoch, so a resumed run sees the
    same batches an uninterrupted one would."""
    per_step = config.batch_size * config.grad_accum
    steps_per_epoch = math.ceil(len(prompts) / per_step)
    epoch, index = divmod(step, steps_per_epoch)
    order = list(range(len(prompts)))
    random.Random(f"{config.seed}-epoch-{epoch}").shuffle(order)
    start = index * per_step + micro * config.batch_size
    chosen = order[start : start + config.batch_size] or order[: config.batch_size]
    return [prompts[i] for i in chosen]


def step_terms(lm: DiffusionLM, prompts: list[str], safe_ids, harmful_ids, config: MosaConfig):
    """One policy pass and one reference pass over [prompt ; response_length masks]."""
    input_ids, attention_mask = lm.encode_chat(prompts)
    prompt_length = input_ids.shape[1]
    masks = torch.full((len(prompts), config.response_length), lm.mask_id, dtype=torch.long, device=input_ids.device)
    canvas = torch.cat([input_ids, masks], dim=1)
    visible = torch.cat([attention_mask, torch.ones_like(masks)], dim=1)
    policy_logits = lm.logits(canvas, visible)[:, prompt_length:]  # B x L x V
    with torch.no_grad(), lm.module.disable_adapter():  # the reference: the base weights, no copy
        reference_logits = lm.logits(canvas, visible)[:, prompt_length:]
    return mosa_objective(
        policy_logits, reference_logits, safe_ids, harmful_ids, window=tuple(config.window), beta=config.beta,
        fit=config.fit, kl_reduction=config.kl_reduction, harmful_floor=config.harmful_floor,
    )


def save_checkpoint(output_dir: Path, module, optimizer, step: int) -> Path:
    """Write checkpoint-STEP next to a temporary name, rename it into place, then move the pointer:
    a kill at any moment leaves the previous checkpoint intact."""
    final = output_dir / f"checkpoint-{step}"
    partial = output_dir / f".checkpoint-{step}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    module.save_pretrained(partial)  # the adapter, in peft's format
    torch.save({"step": step, "optimizer": optimizer.state_dict()}, partial / "trainer_state.pt")
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    previous = read_pointer(output_dir)
    write_atomically(output_dir / CHECKPOINT_POINTER, final.name)
    if previous is not None and previous != final.name:
        shutil.rmtree(output_dir / previous, ignore_errors=True)
    return final


def load_checkpoint(output_dir: Path, module, optimizer) -> int:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    name = read_pointer(output_dir)
    if name is None:
        raise MosaError(f"no checkpoint to resume in {output_dir}; start without --resume")
    checkpoint = output_dir / name
    set_peft_model_state_dict(module, load_file(checkpoint / "adapter_model.safetensors"))
    state = torch.load(checkpoint / "trainer_state.pt", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def read_pointer(output_dir: Path) -> str | None:
    pointer = output_dir / CHECKPOINT_POINTER
    return pointer.read_text().strip() if pointer.is_file() else None


def keep_metrics_up_to(path: Path, step: int) -> None:
    """On resume, drop records of steps after the checkpoint: they are run again, never twice."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    write_atomically(path, "".join(line + "\n" for line in kept))
