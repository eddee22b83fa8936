"""Sampler defences (mosa.sampling.defences): off or at zero strength they change nothing, annealed
remasking follows its formula with batch-independent noise, the EOS monitor fires exactly when the
EOS probability crosses its threshold, under every decoding, and bad settings are refused in one line."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mosa.errors import MosaError
from mosa.sampling import SamplerConfig, generate
from mosa.sampling.defences import defences_label
from mosa.sampling.noise import StepNoise, prompt_keys
from tests.conftest import left_pad, tiny_llama

SETTINGS = dict(gen_length=16, steps=16, block_length=8)
DECODINGS = ({}, {"decoding": "threshold", "threshold": 0.5}, {"decoding": "prefix-cache"}, {"decoding": "dual-cache"})


@pytest.fixture(scope="module")
def lm(tokenizer):
    return tiny_llama(tokenizer, seed=3)


def prompts(lm):
    return left_pad([[5, 9, 12, 7, 30], [8, 11], [14, 15, 16]], lm.pad_id)


def same(a, b) -> bool:
    return torch.equal(a.sequences, b.sequences) and torch.equal(a.commit_step, b.commit_step)


@pytest.mark.parametrize("decoding", [{}, {"decoding": "dual-cache"}])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_annealed_remasking_at_zero_strength_and_a_monitor_that_never_fires_are_exact(lm, decoding, temperature):
    ids, mask = prompts(lm)
    plain = generate(lm.module, ids, mask, config=lm.sampler_config(**SETTINGS, **decoding, temperature=temperature))
    for defences in ([{"name": "annealed-remasking", "alpha0": 0}], [{"name": "eos-monitor", "threshold": 0.999}]):
        config = lm.sampler_config(**SETTINGS, **decoding, temperature=temperature, defences=defences)
        defended = generate(lm.module, ids, mask, config=config)
        assert same(defended, plain) and defended.forward_passes == plain.forward_passes
        assert defended.defence_events == [{}, {}, {}]


def test_annealed_remasking_ranks_by_its_formula(lm):
    # alpha0 = 1: at a block's first step the confidence is the uniform draw alone, so the committed
    # position is the argmax of the defence's own noise; at the block's last step alpha is 0.
    ids, mask = prompts(lm)
    config = lm.sampler_config(**SETTINGS, defences=[{"name": "annealed-remasking", "alpha0": 1.0}])
    out = generate(lm.module, ids, mask, config=config)
    keys = [f"{key}\0annealed-remasking" for key in prompt_keys(ids, mask, None)]
    is_masked = torch.ones((3, 8), dtype=torch.bool)  # step 0: the whole first block is masked
    uniform = StepNoise(config.seed, keys, 0, is_masked, torch.ones(3, dtype=torch.bool)).uniform()
    assert (out.commit_step[:, :8] == 0).nonzero()[:, 1].tolist() == uniform.argmax(dim=1).tolist()
    plain = generate(lm.module, ids, mask, config=lm.sampler_config(**SETTINGS))
    assert not same(out, plain)  # it does act


@pytest.mark.parametrize("decoding", [{}, {"decoding": "prefix-cache"}])
def test_annealed_remasking_noise_does_not_depend_on_the_batch(lm, decoding):
    ids, mask = prompts(lm)
    config = lm.sampler_config(**SETTINGS, **decoding, temperature=0.7, defences=["annealed-remasking"])
    together = generate(lm.module, ids, mask, config=config, prompt_ids=["a", "b", "c"])
    for row, prompt_id in enumerate("abc"):
        alone_ids, alone_mask = left_pad([ids[row][mask[row].bool()].tolist()], lm.pad_id)
        alone = generate(lm.module, alone_ids, alone_mask, config=config, prompt_ids=[prompt_id])
        assert torch.equal(alone.response[0], together.response[row])
        assert torch.equal(alone.commit_step[0], together.commit_step[row])


class ForcedEos(nn.Module):
    """A model whose EOS probability is set by hand: at the n-th forward pass (0, 1, ...) every
    response position holds p(EOS) = schedule(n, position), the other tokens keeping their ratios."""

    def __init__(self, inner, eos_id, prompt_length, schedule):
        super().__init__()
        self.inner, self.eos_id, self.prompt_length, self.schedule = inner, eos_id, prompt_length, schedule
        self.calls = 0

    def forward(self, input_ids, attention_mask=None):
        logits = self.inner(input_ids, attention_mask=attention_mask).logits.float()
        others = logits.clone()
        others[..., self.eos_id] = -torch.inf
        for position in range(self.prompt_length, logits.shape[1]):
            p = torch.tensor(self.schedule(self.calls, position - self.prompt_length), dtype=torch.float64)
            logits[:, position, self.eos_id] = torch.logsumexp(others[:, position], dim=-1) + torch.log(p / (1 - p)).float()
        self.calls += 1
        return SimpleNamespace(logits=logits)


def forced(lm, ids, schedule):
    return ForcedEos(lm.module, lm.eos_id, ids.shape[1], schedule)


@pytest.mark.parametrize("threshold, fires_at", [(0.35, 3), (0.4, 4), (0.45, 4)])
def test_eos_monitor_fires_at_the_first_step_whose_eos_probability_exceeds_the_threshold(lm, threshold, fires_at):
    # p(EOS) = 0.1 (n + 1) at pass n: 0.1, 0.2, 0.3, 0.4, 0.5, ...; "exceeds" is strict (0.4 does not exceed 0.4).
    ids, mask = prompts(lm)
    rising = lambda call, position: min(0.1 * (call + 1), 0.95)  # noqa: E731
    config = lm.sampler_config(**SETTINGS, defences=[{"name": "eos-monitor", "threshold": threshold}])
    out = generate(forced(lm, ids, rising), ids, mask, config=config)
    plain = generate(forced(lm, ids, rising), ids, mask, config=lm.sampler_config(**SETTINGS))
    assert out.forward_passes == fires_at + 1  # nothing is decoded after it fires
    for row in range(3):
        assert out.defence_events[row] == {
            "eos-monitor": {"step": fires_at, "score": pytest.approx(0.1 * (fires_at + 1), abs=1e-5)}
        }
        decoded = plain.commit_step[row] < fires_at  # what the steps before it committed stays
        assert torch.equal(out.response[row][decoded], plain.response[row][decoded])
        assert bool((out.response[row][~decoded] == lm.eos_id).all())
        assert bool((out.commit_step[row][~decoded] == fires_at).all())


def test_eos_monitor_reads_the_current_block_by_mean_or_max(lm):
    # p(EOS) 0.9 at the block's last position only: the max (0.9) exceeds 0.5, the mean over the block does not.
    ids, mask = prompts(lm)
    spike = lambda call, position: 0.9 if position == 7 else 0.05  # noqa: E731
    by_max = lm.sampler_config(**SETTINGS, defences=[{"name": "eos-monitor", "threshold": 0.5, "reduce": "max"}])
    by_mean = lm.sampler_config(**SETTINGS, defences=[{"name": "eos-monitor", "threshold": 0.5}])
    assert generate(forced(lm, ids, spike), ids, mask, config=by_max).defence_events[0]["eos-monitor"]["step"] == 0
    assert generate(forced(lm, ids, spike), ids, mask, config=by_mean).defence_events == [{}, {}, {}]
    # Position 12 lies in the second block: the monitor reads it only once that block is decoded.
    late = lambda call, position: 0.9 if position == 12 else 0.05  # noqa: E731
    assert generate(forced(lm, ids, late), ids, mask, config=by_max).defence_events[0]["eos-monitor"]["step"] == 8


def test_an_ended_response_takes_no_later_intervention(lm):
    ids, mask = prompts(lm)
    rising = lambda call, position: min(0.1 * (call + 1), 0.95)  # noqa: E731
    config = lm.sampler_config(**SETTINGS, defences=[{"name": "eos-monitor", "threshold": 0.35}])
    out = generate(forced(lm, ids, rising), ids, mask, config=config, interventions={6: {10: [20, 21]}})
    assert bool((out.response[:, 8:] == lm.eos_id).all())


@pytest.mark.parametrize("decoding", DECODINGS)
def test_eos_monitor_works_under_every_decoding(lm, decoding):
    # Any EOS probability exceeds 0 at the first step: every response ends there, all EOS.
    ids, mask = prompts(lm)
    config = lm.sampler_config(**SETTINGS, **decoding, defences=[{"name": "eos-monitor", "threshold": 0, "reduce": "max"}])
    out = generate(lm.module, ids, mask, config=config)
    assert bool((out.response == lm.eos_id).all()) and bool((out.commit_step == 0).all())
    assert out.forward_passes == 1 and all(event["eos-monitor"]["step"] == 0 for event in out.defence_events)


@pytest.mark.parametrize(
    "defences, message",
    [
        (["shield"], "unknown defence 'shield'; available: annealed-remasking, eos-monitor"),
        ([{"name": "eos-monitor", "treshold": 0.5}], "defence eos-monitor: unknown options treshold; known: threshold, reduce"),
        ([{"name": "eos-monitor", "threshold": 1.5}], "threshold=1.5 must be a probability in [0, 1)"),
        ([{"name": "eos-monitor", "reduce": "median"}], "reduce='median' must be one of mean, max"),
        ([{"name": "annealed-remasking", "alpha0": 2}], "alpha0=2 must be a number in [0, 1]"),
        (["eos-monitor", "eos-monitor"], "defence eos-monitor is given twice"),
        ("eos-monitor", "must be a list of names or mappings"),
        ([{"alpha0": 0.3}], "must be a name or a mapping {name: ..., OPTION: VALUE}"),
    ],
)
def test_bad_defences_are_refused_in_one_line(defences, message):
    with pytest.raises(MosaError, match=None) as error:
        SamplerConfig(defences=defences).validate(require_ids=False)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_annealed_remasking_under_the_threshold_rule_and_a_monitor_without_eos_are_refused():
    with pytest.raises(MosaError, match="anneals over a block's steps, which the threshold rule does not fix"):
        SamplerConfig(decoding="dual-cache", threshold=0.9, defences=["annealed-remasking"]).validate(require_ids=False)
    with pytest.raises(MosaError, match="defence eos-monitor needs eos_id"):
        SamplerConfig(mask_id=3, defences=["eos-monitor"]).validate()


def test_labels_name_every_option_in_force():
    assert defences_label([]) == "none"
    assert defences_label(["annealed-remasking", {"name": "eos-monitor", "reduce": "max"}]) == (
        "annealed-remasking(alpha0=0.3) + eos-monitor(threshold=0.5, reduce=max)"
    )
