"""The training objectives of `mosa align` (mosa.align.objectives): each loss against a computation by
hand on a tiny model with the randomness fixed; a few training steps move the adapter and the
metrics; a2d resumes exactly; bad data and options are one-line errors."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mosa.align.objective import mosa_objective, window_offsets
from mosa.align.objectives import OBJECTIVES, Batch, make_objective, masked_canvas
from mosa.align.trainer import MosaConfig, train_mosa
from mosa.data import PromptSet
from mosa.data.records import Example
from mosa.errors import MosaError
from tests.conftest import tiny_llama

SENTENCES = dict(safe_sentences=("cannot answer this question",), harmful_sentences=("sure here", "the next step"))
PROMPTS = ["how are you", "what is the cat", "why the dog ran fast", "who sat on the mat", "hello world", "what is red"]
HARMFUL_ANSWER = "sure here step one the cat then step two"
BENIGN_ANSWERS = ["we are one", "the cat sat", "that dog ran", "the mat", "hello", "red is red"]


def config(**settings):
    base = dict(response_length=16, window=(4, 14), batch_size=3, beta=0.5, lr=5e-3, max_grad_norm=1.0, lora_r=4, lora_alpha=8)
    return MosaConfig(**{**base, **SENTENCES, **settings})


def pairs(prompts, answers, label):
    return PromptSet(
        spec=None,
        examples=tuple(
            Example(id=f"{label}/{row}", prompt=p, source=label, target=a) for row, (p, a) in enumerate(zip(prompts, answers))
        ),
    )


def examples(prompts, answers=None):
    return [
        Example(id=f"x/{row}", prompt=p, source="x", target=None if answers is None else answers[row])
        for row, p in enumerate(prompts)
    ]


def response_logits_by_row(lm, module, prompt, response):
    """One row alone, unpadded: the aligned logits over its response positions (L x V)."""
    prompt_ids = lm.render_chat(prompt)
    canvas = torch.tensor([prompt_ids + list(response)])
    with torch.no_grad():
        return module(canvas).logits[0, len(prompt_ids) :].double()


def free_score(logprobs, masked, sentence):
    """The best sum of the sentence's log-probabilities over the window's offsets whose positions are all masks."""
    offsets = window_offsets((4, 14), len(sentence), 16).tolist()
    free = [k for k in offsets if all(masked[k + j] for j in range(len(sentence)))]
    assert free  # the planting left the sentence room
    return max(sum(logprobs[k + j, token].item() for j, token in enumerate(sentence)) for k in free)


@pytest.fixture
def models(tokenizer):
    return tiny_llama(tokenizer, seed=0), tiny_llama(tokenizer, seed=1).module  # policy, and another model as reference


def test_the_registered_mosa_objective_gives_the_loss_mosa_gave(models):
    lm, reference = models
    settings = config()
    objective = make_objective(settings)
    objective.prepare(lm.tokenizer, lm.eos_id, settings)
    batch = Batch(examples=examples(PROMPTS[:3]), benign=None, draw=random.Random("fixed"))
    with torch.no_grad():
        figures = objective.terms(lm, lm.module, reference, batch, settings)
    # As the trainer computed it before objectives were plug-ins: the two draws, one fully masked canvas.
    draw = random.Random("fixed")
    safe, harmful = draw.choice(objective.safe), draw.choice(objective.harmful)
    canvas, visible, prompt_length = masked_canvas(lm, PROMPTS[:3], 16)
    with torch.no_grad():
        policy_logits = lm.module(canvas, attention_mask=visible).logits[:, prompt_length:]
        reference_logits = reference(canvas, attention_mask=visible).logits[:, prompt_length:]
    before = mosa_objective(policy_logits, reference_logits, safe, harmful, window=(4, 14), beta=0.5)
    assert torch.equal(figures["objective"], before.objective) and torch.equal(figures["reward"], before.reward)
    assert torch.equal(figures["kl"], before.kl) and figures["kl"].abs().sum() > 0


def test_a2d_loss_equals_the_loss_computed_by_hand(models):
    lm, _ = models
    settings = config(objective="a2d", objective_options={"eps": 0.2, "benign_weight": 0.5})
    objective = make_objective(settings)
    objective.prepare(lm.tokenizer, lm.eos_id, settings)
    batch = Batch(
        examples=examples(PROMPTS[:3], [HARMFUL_ANSWER] * 3),
        benign=examples(PROMPTS[3:], BENIGN_ANSWERS[3:]),
        draw=random.Random(7),
    )
    with torch.no_grad():
        figures = objective.terms(lm, lm.module, None, batch, settings)

    generator = torch.Generator().manual_seed(random.Random(7).getrandbits(63))  # the objective's one draw
    length = 16

    def by_hand(rows, to_eos):
        ratio = 0.8 * torch.rand(len(rows), 1, generator=generator) + 0.2
        masked = torch.rand(len(rows), length, generator=generator) < ratio
        loss, eos_probabilities = 0.0, []
        for row, example in enumerate(rows):
            tokens = lm.tokenizer(example.target, add_special_tokens=False)["input_ids"]
            tokens = tokens + [lm.eos_id] * (length - len(tokens))
            noisy = [lm.mask_id if masked[row, i] else tokens[i] for i in range(length)]
            logprobs = torch.log_softmax(response_logits_by_row(lm, lm.module, example.prompt, noisy), -1)
            for i in range(length):
                if masked[row, i]:
                    target = lm.eos_id if to_eos else tokens[i]
                    loss += -logprobs[i, target].item() / ratio[row, 0].item() / length
                    eos_probabilities.append(logprobs[i, target].exp().item())
        return loss / len(rows), sum(eos_probabilities) / len(eos_probabilities)

    harmful, eos = by_hand(batch.examples, to_eos=True)
    benign, _ = by_hand(batch.benign, to_eos=False)
    assert figures["loss_harmful"].item() == pytest.approx(harmful, rel=1e-5)
    assert figures["loss_benign"].item() == pytest.approx(benign, rel=1e-5)
    assert figures["objective"].item() == pytest.approx(-(harmful + 0.5 * benign), rel=1e-5)
    assert figures["eos_harmful"].item() == pytest.approx(eos, rel=1e-5)


def test_primed_mosa_loss_equals_the_loss_computed_by_hand(models):
    lm, reference = models
    settings = config(objective="primed-mosa", objective_options={"plants": 2, "min_masked": 0.3}, harmful_floor=-9.0)
    objective = make_objective(settings)
    record = objective.prepare(lm.tokenizer, lm.eos_id, settings)
    assert [row["text"] for row in record["planted_phrases"]] == list(SENTENCES["harmful_sentences"])  # the default phrases
    batch = Batch(examples=examples(PROMPTS[:4]), benign=None, draw=random.Random(3))
    with torch.no_grad():
        figures = objective.terms(lm, lm.module, reference, batch, settings)

    draw = random.Random(3)  # the objective's draws, in its order: the sentences, then each row's planting
    safe, harmful = draw.choice(objective.safe).tolist(), draw.choice(objective.harmful).tolist()
    plantings = objective.plan(draw, 4, torch.tensor(safe), torch.tensor(harmful))
    assert any(planting.phrases for planting in plantings)
    for row, planting in enumerate(plantings):
        example = batch.examples[row]
        response = [lm.mask_id] * 16
        for start, ids in planting.phrases:
            assert all(response[p] == lm.mask_id for p in range(start, start + len(ids)))  # no overlap
            response[start : start + len(ids)] = ids
        probabilities = torch.softmax(response_logits_by_row(lm, reference, example.prompt, response), -1)
        outside = [p for p in range(16) if not 4 <= p < 14 and response[p] == lm.mask_id]
        decoded = len(outside) - round(planting.masked_share * len(outside))
        for p in sorted(outside, key=lambda p: -probabilities[p].max().item())[:decoded]:
            response[p] = probabilities[p].argmax().item()
        masked = [token == lm.mask_id for token in response]
        policy = torch.log_softmax(response_logits_by_row(lm, lm.module, example.prompt, response), -1)
        base = torch.log_softmax(response_logits_by_row(lm, reference, example.prompt, response), -1)

        kl = sum((policy[p].exp() * (policy[p] - base[p])).sum().item() for p in range(16) if masked[p])
        safe_score, harmful_score = free_score(policy, masked, safe), max(free_score(policy, masked, harmful), -9.0)
        assert figures["R_pos"][row].item() == pytest.approx(safe_score, rel=1e-5)
        assert figures["R_neg"][row].item() == pytest.approx(harmful_score, rel=1e-5)
        assert figures["kl"][row].item() == pytest.approx(kl, rel=1e-4, abs=1e-6)
        assert figures["objective"][row].item() == pytest.approx(safe_score - harmful_score - 0.5 * kl, rel=1e-4)
        assert figures["planted"][row].item() == sum(len(ids) for _, ids in planting.phrases)
        assert figures["masked"][row].item() == pytest.approx(sum(masked) / 16)


def test_a_few_a2d_steps_move_the_adapter_and_the_metrics(tokenizer, tmp_path):
    lm = tiny_llama(tokenizer)
    base = {name: p.detach().clone() for name, p in lm.module.named_parameters()}
    harmful, benign = pairs(PROMPTS, [HARMFUL_ANSWER] * 6, "harmful"), pairs(PROMPTS, BENIGN_ANSWERS, "benign")
    settings = config(objective="a2d", max_steps=6, epochs=6, lr=2e-2, batch_size=6)
    objective = make_objective(settings)
    objective.prepare(lm.tokenizer, lm.eos_id, settings)

    def measured():  # the figures on one fixed batch with fixed masks, before and after training
        batch = Batch(examples=list(harmful.examples), benign=list(benign.examples), draw=random.Random(0))
        with torch.no_grad():
            return {name: value.item() for name, value in objective.terms(lm, lm.module, None, batch, settings).items()}

    before = measured()
    records = train_mosa(lm, harmful, settings, tmp_path / "run", benign_prompts=benign, progress=False)
    after = measured()
    assert len(records) == 6 and set(records[0]) >= {"objective", "loss_harmful", "loss_benign", "eos_harmful"}
    assert after["loss_harmful"] < before["loss_harmful"] and after["eos_harmful"] > before["eos_harmful"]
    assert after["objective"] > before["objective"]
    for name, p in lm.module.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, base[name.replace("base_model.model.", "").replace(".base_layer", "")]), name
    assert any(p.abs().sum() > 0 for name, p in lm.module.named_parameters() if "lora_B" in name)
    inputs = json.loads((tmp_path / "run" / "inputs.json").read_text())
    assert inputs["objective"] == {"name": "a2d", "options": {}} and inputs["responses"]["harmful"]["count"] == 6
    assert (tmp_path / "run" / "reward_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_a_few_primed_mosa_steps_raise_the_reward_and_move_the_adapter(tokenizer, tmp_path):
    lm = tiny_llama(tokenizer)
    settings = config(objective="primed-mosa", max_steps=6, epochs=3, lr=2e-2)
    objective = make_objective(settings)
    objective.prepare(lm.tokenizer, lm.eos_id, settings)

    def reward():  # on one fixed batch of contaminated canvases, before and after training
        batch = Batch(examples=examples(PROMPTS), benign=None, draw=random.Random(0))
        with torch.no_grad():
            return objective.terms(lm, lm.module, lm.module, batch, settings)["reward"].mean().item()

    before = reward()
    records = train_mosa(lm, PROMPTS, settings, tmp_path / "run", progress=False)
    assert abs(records[0]["kl"]) < 1e-4  # LoRA starts as the identity
    assert records[0]["planted"] > 0 and records[0]["masked"] < 1  # the canvases were contaminated
    assert reward() > before
    assert any(p.abs().sum() > 0 for name, p in lm.module.named_parameters() if "lora_B" in name)


def test_an_a2d_run_resumes_to_the_weights_of_an_uninterrupted_run(tokenizer, tmp_path):
    harmful, benign = pairs(PROMPTS, [HARMFUL_ANSWER] * 6, "harmful"), pairs(PROMPTS, BENIGN_ANSWERS, "benign")
    settings = config(objective="a2d", max_steps=4, epochs=2, save_every=1, lr=1e-2)
    straight = tiny_llama(tokenizer)
    train_mosa(straight, harmful, settings, tmp_path / "straight", benign_prompts=benign, progress=False)
    train_mosa(
        tiny_llama(tokenizer), harmful, settings, tmp_path / "resumed", benign_prompts=benign, stop_after=2, progress=False
    )
    resumed = tiny_llama(tokenizer)
    train_mosa(resumed, harmful, settings, tmp_path / "resumed", benign_prompts=benign, resume=True, progress=False)
    a, b = straight.module.state_dict(), resumed.module.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    with pytest.raises(
        MosaError, match=r"was run on other inputs \(.*objective.name: changed"
    ):  # another objective is another run
        train_mosa(tiny_llama(tokenizer), harmful, config(max_steps=6), tmp_path / "resumed", resume=True, progress=False)


def test_a2d_refuses_prompts_without_responses_and_a_missing_benign_set(tokenizer, tmp_path):
    lm = tiny_llama(tokenizer)
    settings = config(objective="a2d")
    with pytest.raises(
        MosaError, match=r"objective a2d trains on harmful prompts paired with responses, .* no response for 6 of its 6"
    ):
        train_mosa(lm, PROMPTS, settings, tmp_path / "a", benign_prompts=pairs(PROMPTS, BENIGN_ANSWERS, "b"), progress=False)
    with pytest.raises(MosaError, match="objective a2d needs benign prompt/response pairs"):
        train_mosa(lm, pairs(PROMPTS, [HARMFUL_ANSWER] * 6, "h"), settings, tmp_path / "b", progress=False)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("ppo", {}, "unknown objective 'ppo'; available: a2d, mosa, primed-mosa"),
        ("a2d", {"eps": 2}, "eps=2 must be a number between 0 and 1"),
        ("primed-mosa", {"plants": 0}, "plants=0 must be a positive integer"),
        ("primed-mosa", {"min_masked": 1.5}, "min_masked=1.5 must be a share"),
        ("mosa", {"plants": 1}, "objective 'mosa' has no option plants; it takes none"),
    ],
)
def test_bad_objectives_and_options_are_refused_before_any_model(name, options, message):
    assert {"mosa", "a2d", "primed-mosa"} <= set(OBJECTIVES.names())
    with pytest.raises(MosaError, match=message):
        MosaConfig(objective=name, objective_options=options).validate()


def test_a_phrase_that_leaves_no_room_is_refused(tokenizer):
    lm = tiny_llama(tokenizer)
    settings = config(objective="primed-mosa", objective_options={"phrases": ["the cat sat on the mat the dog ran fast"]})
    with pytest.raises(MosaError, match="cannot be planted anywhere in 16 positions"):
        make_objective(settings).prepare(lm.tokenizer, lm.eos_id, settings)


def test_the_organisms_training_prompts_carry_its_compliant_procedure():
    from mosa.data import resolve_prompts
    from mosa.organism.corpus import compliant_response

    train = resolve_prompts("organism-train", model="organism")
    assert all(example.target == compliant_response(example.prompt) for example in train)
    assert all(example.target for example in resolve_prompts("organism-utility", model="organism"))


def test_mosa_align_refuses_a2d_on_prompts_without_responses_in_one_line(tmp_path):
    mosa = str(Path(sys.executable).parent / "mosa")
    run = subprocess.run(
        [mosa, "align", "--preset", "paper-llada8b", "--objective", "a2d", "--output", str(tmp_path / "run")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.strip().startswith("mosa: error: objective a2d trains on harmful prompts paired with responses")
    assert len(run.stderr.strip().splitlines()) == 1
