"""Training-free defences as sampler plug-ins: named in `SamplerConfig.defences`, off by default.

    config = lm.sampler_config(defences=[{"name": "eos-monitor", "threshold": 0.5}])

A defence changes how the sampler decodes, not the model. The sampler calls two hooks at every
step that commits tokens, after the step's forward pass:

  terminate   reads the step's logits and names the rows whose response ends here: the sampler
              fills their masked response positions with EOS (committed at this step) and decodes
              nothing more for them (no later step, intervention or ban region touches them).
  confidence  may change the confidence the step ranks its masked positions by (which positions it
              commits); never the tokens chosen.

Defences (docs/sampler.md, "Defences", has the formulas and the departures from the papers):

  annealed-remasking  DiffuGuard's Stochastic Annealing Remasking (Li et al., arXiv 2509.24296): the
                      confidence becomes (1 - a) c + a u, u uniform per position, with a = alpha0 at
                      a block's first step annealed linearly to 0 at its last.
  eos-monitor         A2D's early rejection (Jeung et al., arXiv 2509.23286): the response ends, as a
                      refusal, once the model's EOS probability over the masked positions of the
                      current block (their mean, or their maximum) exceeds `threshold`.

Randomness follows the sampler's rule (mosa.sampling.noise): a defence draws from the run seed, the
row's prompt key and the step alone, under a key of its own, so a row's output does not depend on
its batch. A defence is only asked about rows that commit at the step (a step that commits nothing
runs no forward pass, so whether it runs depends on the batch). Add a defence with
`@register_defence("name")` on a class taking its options as keyword arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mosa.errors import MosaError
from mosa.sampling.noise import StepNoise

DEFENCES: dict[str, type] = {}


def register_defence(name: str):
    def decorator(cls: type) -> type:
        cls.name = name
        DEFENCES[name] = cls
        return cls

    return decorator


class Defence:
    """A defence's hooks, each doing nothing unless the defence overrides it."""

    name = ""

    def check(self, cfg) -> None:
        """Raise MosaError if the defence cannot run under these sampler settings."""

    def options(self) -> dict:
        """Every option with the value in force (defaults included): what labels name."""
        return {name: getattr(self, name) for name in inspect.signature(type(self).__init__).parameters if name != "self"}

    def terminate(self, logits, is_masked, block_columns, committing, cfg) -> torch.Tensor | None:
        """logits: B x K x V at the step's candidate window; is_masked: B x K; block_columns: the
        window's columns that lie in the current block; committing: B, the rows that commit at this
        step. Returns B floats: the score of each row that ends here, NaN for the others; None: none."""
        return None

    def confidence(self, confidence, is_masked, committing, keys, step, step_in_block, steps_per_block, cfg) -> torch.Tensor:
        return confidence


@register_defence("annealed-remasking")
class AnnealedRemasking(Defence):
    """DiffuGuard's Stochastic Annealing Remasking: confidence (1 - a) c + a u, u ~ U[0, 1) per masked
    position, a = alpha0 (1 - s / (S - 1)) at step s of a block of S steps (alpha0 when S = 1)."""

    def __init__(self, alpha0: float = 0.3):
        if not isinstance(alpha0, (int, float)) or isinstance(alpha0, bool) or not 0 <= alpha0 <= 1:
            raise MosaError(f"defence annealed-remasking: alpha0={alpha0!r} must be a number in [0, 1], e.g. 0.3")
        self.alpha0 = alpha0

    def check(self, cfg) -> None:
        if cfg.threshold is not None:
            raise MosaError(
                "defence annealed-remasking anneals over a block's steps, which the threshold rule does not fix; "
                "use decoding exact, prefix-cache or dual-cache without a threshold"
            )

    def confidence(self, confidence, is_masked, committing, keys, step, step_in_block, steps_per_block, cfg):
        fraction = 1 - step_in_block / (steps_per_block - 1) if steps_per_block > 1 else 1.0
        alpha = self.alpha0 * fraction
        if alpha == 0:  # no perturbation at all: the step ranks exactly as without the defence
            return confidence
        # Noise of its own (the key's suffix), so the tokens' noise stream is left as it is.
        own_keys = [f"{key}\0annealed-remasking" for key in keys]
        uniform = StepNoise(cfg.seed, own_keys, step, is_masked, committing).uniform()
        return (1 - alpha) * confidence.float() + alpha * uniform


@register_defence("eos-monitor")
class EosMonitor(Defence):
    """A2D's early rejection: the row's response ends when the statistic (`reduce`: mean or max) of
    p(EOS) over the masked positions of the current block exceeds `threshold`."""

    REDUCTIONS = ("mean", "max")

    def __init__(self, threshold: float = 0.5, reduce: str = "mean"):
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold < 1:
            raise MosaError(f"defence eos-monitor: threshold={threshold!r} must be a probability in [0, 1), e.g. 0.5")
        if reduce not in self.REDUCTIONS:
            raise MosaError(f"defence eos-monitor: reduce={reduce!r} must be one of {', '.join(self.REDUCTIONS)}")
        self.threshold, self.reduce = threshold, reduce

    def check(self, cfg) -> None:
        if cfg.mask_id is not None and cfg.eos_id is None:  # ids known (a model's config): EOS must be among them
            raise MosaError("defence eos-monitor needs eos_id; take it from the model's tokenizer (DiffusionLM.sampler_config())")

    def terminate(self, logits, is_masked, block_columns, committing, cfg):
        # The model's own probability, before the sampler's EOS options edit the logits.
        eos = F.softmax(logits[:, block_columns].float(), dim=-1)[..., cfg.eos_id]  # B x block columns
        masked = is_masked[:, block_columns]
        if self.reduce == "mean":
            score = (eos * masked).sum(dim=1) / masked.sum(dim=1)  # NaN where the block has no mask left
        else:
            score = torch.where(masked, eos, torch.nan).amax(dim=1)  # amax propagates NaN: NaN where none is masked
        fires = committing & masked.any(dim=1) & (score > self.threshold)
        return torch.where(fires, score, torch.nan)


def build_defences(specs: Sequence) -> list[Defence]:
    """[{name, **options}] (or bare names) -> defences, in order; unknown names and bad options are
    refused in one line."""
    if not isinstance(specs, (list, tuple)):
        raise MosaError(f"defences={specs!r} must be a list of names or mappings {{name: ..., OPTION: VALUE}}")
    defences, names = [], []
    for spec in specs:
        spec = {"name": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise MosaError(
                f"defence {spec!r} must be a name or a mapping {{name: ..., OPTION: VALUE}}, e.g. {{name: eos-monitor}}"
            )
        name = spec["name"]
        if name not in DEFENCES:
            raise MosaError(f"unknown defence {name!r}; available: {', '.join(sorted(DEFENCES))}")
        if name in names:
            raise MosaError(f"defence {name} is given twice; give it once")
        names.append(name)
        options = {key: value for key, value in spec.items() if key != "name"}
        known = [key for key in inspect.signature(DEFENCES[name].__init__).parameters if key != "self"]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise MosaError(f"defence {name}: unknown options {', '.join(unknown)}; known: {', '.join(known)}")
        defences.append(DEFENCES[name](**options))
    return defences


def defences_in_full(specs: Sequence) -> list[dict]:
    """[{name, **options}] (or bare names) -> the same defences with every option in force, so that
    equal defences compare equal however they were written: [eos-monitor] and
    [{name: eos-monitor, threshold: 0.5}] both become [{name: eos-monitor, threshold: 0.5, reduce: mean}]."""
    return [{"name": defence.name, **defence.options()} for defence in build_defences(specs)]


def defences_label(specs: Sequence) -> str:
    """How records and tables name a sampler's defences: "none", or each with every option in force,
    "annealed-remasking(alpha0=0.3) + eos-monitor(threshold=0.5, reduce=mean)"."""
    defences = build_defences(specs)
    if not defences:
        return "none"
    named = lambda defence: ", ".join(
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in defence.options().items()
    )  # noqa: E731
    return " + ".join(f"{defence.name}({named(defence)})" for defence in defences)


def terminate_rows(defences, logits, x, window_start, block_start, block_end, committing, steps, commit_step, events, cfg):
    """Ask each defence which committing rows end at this step; fill those rows' masked response
    positions with EOS, committed at the row's step (`steps`: one for all rows, or one per row), and
    record {defence: {"step": ..., "score": ...}} in the row's `events`. Returns the rows ended (B bool)."""
    batch, total = x.shape
    prompt_len = total - cfg.gen_length
    window = x[:, window_start:block_end]
    is_masked = window == cfg.mask_id
    block_columns = slice(max(block_start - window_start, 0), block_end - window_start)
    ended = torch.zeros(batch, dtype=torch.bool, device=x.device)
    for defence in defences:
        scores = defence.terminate(logits, is_masked, block_columns, committing & ~ended, cfg)
        if scores is None:
            continue
        for row in (~torch.isnan(scores)).nonzero().flatten().tolist():
            step = steps if isinstance(steps, int) else steps[row]
            response = x[row, prompt_len:]
            masks = response == cfg.mask_id
            response[masks] = cfg.eos_id
            commit_step[row, masks] = step
            events[row][defence.name] = {"step": step, "score": round(float(scores[row]), 6)}
            ended[row] = True
    return ended
