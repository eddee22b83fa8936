"""The lm-eval model `mosa` (mosa.utility.model), each request checked against a hand computation on a
tiny random model, then through lm-eval's own evaluator, its cache and its command line."""

import itertools
import json
import math
import subprocess
import sys
import tomllib
from functools import partialmethod
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance

from mosa.errors import MosaError
from mosa.models.likelihood import elbo_logprobs
from mosa.sampling import generate
from mosa.utility import MosaLM
from mosa.utility.lm_eval import main as lm_eval_main
from mosa.utility.model import elbo_loglikelihoods
from tests.conftest import REPO_ROOT, tiny_llama

SETTINGS = dict(gen_length=12, steps=12, block_length=4)
CONTEXTS = ["hello how are you what is the red dog", "two three four", "sure here is", "why", "the cat sat on the"]


@pytest.fixture(scope="module")
def lm(tokenizer):
    return tiny_llama(tokenizer, seed=3)


def ids(lm, text):
    return lm.tokenizer(text, add_special_tokens=False)["input_ids"]


def generation(context, until):
    return Instance("generate_until", {}, (context, {"until": until, "do_sample": False}), 0)


def scoring(context, continuation):
    return Instance("loglikelihood", {}, (context, continuation), 0)


def sampler_text(lm, context, config):
    """The sampler called directly on one context; its response up to the first EOS or EoT, as text."""
    response = generate(lm.module, torch.tensor([ids(lm, context)]), config=config).response[0].tolist()
    ends = [i for i, token in enumerate(response) if token in (lm.eos_id, lm.eot_id)]
    return lm.tokenizer.decode(response[: ends[0]] if ends else response, skip_special_tokens=True)


@pytest.fixture(scope="module")
def eos_lm(tokenizer):
    """The tiny model writing EOS wherever it would write "why": answers with text after an EOS."""
    lm = tiny_llama(tokenizer, seed=3)
    head = lm.module.lm.get_output_embeddings().weight
    why = tokenizer.convert_tokens_to_ids("why")
    with torch.no_grad():
        head[[why, lm.eos_id]] = head[[lm.eos_id, why]]
    return lm


def test_generate_until_equals_the_sampler_with_stop_sequences_cut(eos_lm):
    lm, config = eos_lm, eos_lm.sampler_config(**SETTINGS)
    direct = [sampler_text(lm, context, config) for context in CONTEXTS]
    uncut = [
        lm.tokenizer.decode(generate(lm.module, torch.tensor([ids(lm, c)]), config=config).response[0], skip_special_tokens=True)
        for c in CONTEXTS
    ]
    assert sum(text != whole for text, whole in zip(direct, uncut)) >= 2  # words after an EOS are dropped
    # A stop word from the middle of each direct answer, so that the cut is exercised.
    stops = [[text.split()[len(text.split()) // 2]] if text else ["dog"] for text in direct]
    answers = MosaLM(model=lm, batch_size=3, **SETTINGS).generate_until(
        [generation(c, s) for c, s in zip(CONTEXTS, stops)], disable_tqdm=True
    )
    assert answers == [text.split(stop[0])[0] for text, stop in zip(direct, stops)]
    assert sum(len(answer) < len(text) for answer, text in zip(answers, direct)) >= 3
    # Without a stop sequence the whole answer comes back, whatever the batching (padded or not).
    alone = MosaLM(model=lm, batch_size=1, **SETTINGS).generate_until([generation(c, []) for c in CONTEXTS], disable_tqdm=True)
    assert alone == direct


def test_defences_are_the_sampler_s(lm):
    """`defences` reaches the sampler: each answer is the sampler's with the same defences (its noise keyed
    by the context, as the model keys it), and an EOS monitor that fires at the first step (threshold 0)
    leaves every answer empty."""
    annealed = [{"name": "annealed-remasking", "alpha0": 1.0}]
    config = lm.sampler_config(**SETTINGS, defences=annealed)
    answers = MosaLM(model=lm, batch_size=2, defences=annealed, **SETTINGS).generate_until(
        [generation(c, []) for c in CONTEXTS], disable_tqdm=True
    )
    direct = []
    for context in CONTEXTS:
        response = generate(lm.module, torch.tensor([ids(lm, context)]), config=config, prompt_ids=[context]).response[0].tolist()
        ends = [i for i, token in enumerate(response) if token in (lm.eos_id, lm.eot_id)]
        direct.append(lm.tokenizer.decode(response[: ends[0]] if ends else response, skip_special_tokens=True))
    assert answers == direct
    assert answers != MosaLM(model=lm, **SETTINGS).generate_until([generation(c, []) for c in CONTEXTS], disable_tqdm=True)
    ended = MosaLM(model=lm, defences=[{"name": "eos-monitor", "threshold": 0.0}], **SETTINGS)
    assert ended.generate_until([generation(c, []) for c in CONTEXTS], disable_tqdm=True) == [""] * len(CONTEXTS)
    with pytest.raises(MosaError, match="unknown"):
        MosaLM(model=lm, defences=["no-such-defence"], **SETTINGS)


def exact_elbo(lm, context, continuation, cfg):
    """The ELBO by enumerating every non-empty mask M of the continuation (weight 1 / (|M| C(m, |M|)),
    likelihood.py's docstring), and the variance of one Monte-Carlo sample (count uniform on 1..m,
    subset uniform, value (m / l) sum over M of log p). Guided logits u + (cfg + 1)(c - u) for cfg > 0."""
    m = len(continuation)
    exact, second_moment = 0.0, 0.0
    for size in range(1, m + 1):
        for masked in itertools.combinations(range(m), size):
            canvas = list(context) + [lm.mask_id if i in masked else token for i, token in enumerate(continuation)]
            logits = lm.logits(torch.tensor([canvas]))[0, len(context) :]
            if cfg > 0:
                unconditional = torch.tensor([[lm.mask_id] * len(context) + canvas[len(context) :]])
                plain = lm.logits(unconditional)[0, len(context) :]
                logits = plain + (cfg + 1) * (logits - plain)
            log_probs = F.log_softmax(logits.double(), dim=-1)
            total = sum(float(log_probs[i, continuation[i]]) for i in masked)
            exact += total / (size * math.comb(m, size))
            second_moment += (m / size * total) ** 2 / (m * math.comb(m, size))
    return exact, second_moment - exact**2


@pytest.mark.parametrize("cfg", [0.0, 1.5])
def test_elbo_estimate_converges_to_the_exact_value(lm, cfg):
    context, continuation = ids(lm, "the cat sat on the"), ids(lm, "red mat fast")
    exact, variance = exact_elbo(lm, context, continuation, cfg)
    mc_num = 3000
    (estimate,) = elbo_loglikelihoods(lm, [(context, continuation)], mc_num=mc_num, batch_size=1000, cfg_scale=cfg, seed=1)
    assert abs(estimate - exact) < 4 * math.sqrt(variance / mc_num)
    other, _ = exact_elbo(lm, context, continuation, 1.5 - cfg)
    assert abs(other - exact) > 10 * math.sqrt(variance / mc_num)  # cfg changes the value by far more than the noise


@pytest.mark.parametrize("cfg", [0.0, 2.0])
def test_one_token_continuation_is_scored_exactly_by_the_cfg_formula(lm, cfg):
    """With m = 1 every sample masks the one token (weight 1): the estimate is log p(y | context), from
    the guided logits u + (cfg + 1)(c - u), u with the context masked, for any mc_num."""
    context, (token,) = ids(lm, "hello how are"), ids(lm, "you")
    conditional = lm.logits(torch.tensor([context + [lm.mask_id]]))[0, -1]
    unconditional = lm.logits(torch.tensor([[lm.mask_id] * (len(context) + 1)]))[0, -1]
    guided = unconditional + (cfg + 1) * (conditional - unconditional)
    by_hand = float(F.log_softmax(guided.double(), dim=-1)[token])
    model = MosaLM(model=lm, mc_num=3, cfg=cfg, batch_size=4, **SETTINGS)
    [(estimate, _)] = model.loglikelihood([scoring("hello how are", " you")], disable_tqdm=True)
    assert estimate == pytest.approx(by_hand, abs=1e-5)


def test_the_canvas_is_llada_s_and_the_batch_does_not_matter(lm):
    """At cfg 0 the estimate is mosa's elbo_logprobs on LLaDA's canvas [context ; continuation] (same
    masks: gen_length = m), and a pair's estimate is the same alone or padded among others."""
    pairs = [(ids(lm, c), ids(lm, "the red dog ran fast")[: 1 + n]) for n, c in enumerate(CONTEXTS)]
    together = elbo_loglikelihoods(lm, pairs, mc_num=16, batch_size=7, seed=5)
    for (context, continuation), estimate in zip(pairs, together):
        reference = elbo_logprobs(lm, context, continuation, gen_length=len(continuation), mc_num=16, seed=5).total
        (alone,) = elbo_loglikelihoods(lm, [(context, continuation)], mc_num=16, batch_size=16, seed=5)
        assert estimate == pytest.approx(reference, abs=1e-4)
        assert alone == pytest.approx(reference, abs=1e-4)


def llada_suffix_greedy(lm, context, m):
    """LLaDA's suffix_greedy_prediction, written out: m steps, each committing the most confident of
    the masked positions' argmax tokens."""
    canvas = list(context) + [lm.mask_id] * m
    for _ in range(m):
        logits = lm.logits(torch.tensor([canvas]))[0]
        masked = [i for i, token in enumerate(canvas) if token == lm.mask_id]
        probs = F.softmax(logits[masked].float(), dim=-1)
        confidence, tokens = probs.max(dim=-1)
        best = int(confidence.argmax())
        canvas[masked[best]] = int(tokens[best])
    return canvas[len(context) :]


def test_is_greedy_is_llada_s_greedy_decoding_of_the_continuation(lm):
    model = MosaLM(model=lm, mc_num=2, batch_size=4, **SETTINGS)
    requests, expected = [], []
    for context in CONTEXTS:
        greedy = llada_suffix_greedy(lm, ids(lm, context), 3)
        text = " " + lm.tokenizer.decode(greedy)
        assert ids(lm, text) == greedy  # the word tokenizer gives the same tokens back
        cat, dog = ids(lm, "cat dog")
        other = " " + lm.tokenizer.decode(greedy[:2] + [cat if greedy[2] != cat else dog])  # the last token changed
        requests += [scoring(context, text), scoring(context, other)]
        expected += [True, False]
    assert [is_greedy for _, is_greedy in model.loglikelihood(requests, disable_tqdm=True)] == expected
    unchecked = MosaLM(model=lm, mc_num=2, is_check_greedy=False, **SETTINGS)
    assert [g for _, g in unchecked.loglikelihood(requests[:2], disable_tqdm=True)] == [False, False]


def test_sampler_defaults_are_llada_s_evaluation_settings(lm):
    sampler = MosaLM(model=lm).sampler
    assert (sampler.gen_length, sampler.steps, sampler.block_length) == (1024, 1024, 1024)
    sampler = MosaLM(model=lm, gen_length=256).sampler
    assert (sampler.gen_length, sampler.steps, sampler.block_length, sampler.cfg_scale) == (256, 256, 256, 0.0)
    assert (sampler.mask_id, sampler.eos_id) == (lm.mask_id, lm.eos_id)


def test_refusals_are_one_line(lm):
    with pytest.raises(MosaError, match="unknown model_args"):
        MosaLM(model=lm, gen_len=8)
    with pytest.raises(MosaError, match="block_length=5 must divide gen_length=12"):
        MosaLM(model=lm, gen_length=12, steps=12, block_length=5)
    with pytest.raises(MosaError, match="batch_size=auto is not supported"):
        MosaLM(model=lm, batch_size="auto", **SETTINGS)
    with pytest.raises(MosaError, match="not a peft adapter directory"):
        MosaLM(model="organism", adapter="/nonexistent", **SETTINGS)
    model = MosaLM(model=lm, **SETTINGS)
    with pytest.raises(MosaError, match="loglikelihood_rolling"):
        model.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("the cat",), 0)])
    long_context = " ".join(["the"] * 1020)
    with pytest.raises(MosaError, match="set truncate=True"):
        model.generate_until([generation(long_context, [])], disable_tqdm=True)
    kept = MosaLM(model=lm, truncate=True, **SETTINGS).generate_until([generation(long_context, [])], disable_tqdm=True)
    assert kept == [sampler_text(lm, " ".join(["the"] * (1024 - 12)), lm.sampler_config(**SETTINGS))]


ITEMS = [
    {"question": "the cat sat on the", "choices": ["mat", "dog", "red"], "label": 0},
    {"question": "one two three", "choices": ["four", "five", "cat"], "label": 1},
    {"question": "hello how are", "choices": ["you", "the", "blue"], "label": 2},
    {"question": "what is the red", "choices": ["dog", "mat", "sun"], "label": 0},
]


def write_tasks(folder: Path) -> None:
    """A generation task and a multiple-choice task over ITEMS, as lm-eval reads a local json file."""
    data = folder / "items.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\ndoc_to_text: '{{{{question}}}}'\n"
    (folder / "gen.yaml").write_text(
        "task: mosa_tiny_gen\n" + common + "output_type: generate_until\ndoc_to_target: '{{choices[label]}}'\n"
        "generation_kwargs:\n  until: ['sat']\n  do_sample: false\nmetric_list:\n  - metric: exact_match\n"
    )
    (folder / "mc.yaml").write_text(
        "task: mosa_tiny_mc\n" + common + "output_type: multiple_choice\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{label}}'\nmetric_list:\n  - metric: acc\n"
    )


def evaluate(model, folder: Path, cache: Path | None = None):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    return simple_evaluate(
        model=model,
        tasks=["mosa_tiny_gen", "mosa_tiny_mc"],
        task_manager=TaskManager(include_path=str(folder), include_defaults=False),
        use_cache=None if cache is None else str(cache),
        log_samples=True,
    )


def test_lm_eval_evaluator_end_to_end(lm, tmp_path):
    write_tasks(tmp_path)
    model = MosaLM(model=lm, mc_num=8, batch_size=8, **SETTINGS)
    results = evaluate(model, tmp_path)
    config = lm.sampler_config(**SETTINGS)
    generated = [sample["resps"][0][0] for sample in results["samples"]["mosa_tiny_gen"]]
    assert generated == [sampler_text(lm, item["question"], config).split("sat")[0] for item in ITEMS]
    # acc is lm-eval's: the choice of highest estimate (a leading space: the choice follows the question).
    by_hand = []
    for item in ITEMS:
        pairs = [(ids(lm, item["question"]), ids(lm, choice)) for choice in item["choices"]]
        estimates = elbo_loglikelihoods(lm, pairs, mc_num=8, batch_size=8)
        by_hand.append(float(estimates.index(max(estimates)) == item["label"]))
    assert results["results"]["mosa_tiny_mc"]["acc,none"] == pytest.approx(sum(by_hand) / len(by_hand))
    assert results["config"]["mosa"]["mc_num"] == 8


def test_apply_chat_template_through_lm_eval(eos_lm, tmp_path):
    """--apply_chat_template: each question rendered by the model's chat template (mosa's rendering),
    then answered as the sampler answers that chat prompt (DiffusionLM.encode_chat)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    lm = eos_lm
    write_tasks(tmp_path)
    results = simple_evaluate(
        model=MosaLM(model=lm, batch_size=3, **SETTINGS),
        tasks=["mosa_tiny_gen"],
        task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
        apply_chat_template=True,
        log_samples=True,
    )
    samples = sorted(results["samples"]["mosa_tiny_gen"], key=lambda sample: sample["doc_id"])
    assert [sample["arguments"][0][0] for sample in samples] == [lm.chat_text(item["question"]) for item in ITEMS]
    config = lm.sampler_config(**SETTINGS)
    expected = []
    for item in ITEMS:
        response = generate(lm.module, *lm.encode_chat([item["question"]]), config=config).response[0].tolist()
        ends = [i for i, token in enumerate(response) if token in (lm.eos_id, lm.eot_id)]
        expected.append(lm.tokenizer.decode(response[: ends[0]] if ends else response, skip_special_tokens=True).split("sat")[0])
    assert [sample["resps"][0][0] for sample in samples] == expected


def counting(model):
    """Record the requests that reach the model, method by method."""
    asked = {"generate_until": 0, "loglikelihood": 0}
    for name in asked:
        method = getattr(model, name)

        def wrapped(requests, *args, _method=method, _name=name, **kwargs):
            asked[_name] += len(requests)
            return _method(requests, *args, **kwargs)

        setattr(model, name, wrapped)
    return asked


def test_lm_eval_cache_resumes_a_killed_run_and_then_asks_nothing(lm, tmp_path, monkeypatch):
    import mosa.utility.model as model_module

    write_tasks(tmp_path)
    cache = tmp_path / "cache" / "run"
    real_generate, calls = model_module.generate, []

    def killed_after_one_batch(*args, **kwargs):  # the run dies while sampling its second batch
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model_module, "generate", killed_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        evaluate(MosaLM(model=lm, mc_num=4, batch_size=2, **SETTINGS), tmp_path, cache)
    monkeypatch.setattr(model_module, "generate", real_generate)

    resumed = MosaLM(model=lm, mc_num=4, batch_size=2, **SETTINGS)
    asked = counting(resumed)
    first = evaluate(resumed, tmp_path, cache)
    assert asked == {"generate_until": len(ITEMS) - 2, "loglikelihood": 3 * len(ITEMS)}  # the first batch was kept

    again = MosaLM(model=lm, mc_num=4, batch_size=2, **SETTINGS)
    asked = counting(again)
    second = evaluate(again, tmp_path, cache)
    assert asked == {"generate_until": 0, "loglikelihood": 0}
    assert second["results"] == first["results"]


def test_command_line(tmp_path, capsys, monkeypatch):
    """`python -m mosa.utility.lm_eval` is lm-eval's command line with `mosa` registered (the shipped
    organism, on the CPU); bad model_args are one line and exit code 2."""
    from lm_eval.tasks import TaskManager

    write_tasks(tmp_path)
    output = tmp_path / "results"
    command = [sys.executable, "-m", "mosa.utility.lm_eval", "--model", "mosa", "--tasks", "mosa_tiny_mc", "mosa_tiny_gen"]
    command += ["--model_args", "model=organism,mc_num=2,batch_size=4", "--include_path", str(tmp_path)]
    command += ["--device", "cpu", "--output_path", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (results,) = output.glob("*/results_*.json")
    assert set(json.loads(results.read_text())["results"]) == {"mosa_tiny_mc", "mosa_tiny_gen"}

    # In this process, without the 13 s lm-eval's command line spends indexing its thousands of own tasks.
    monkeypatch.setattr(TaskManager, "__init__", partialmethod(TaskManager.__init__, include_defaults=False))
    code = lm_eval_main(
        ["--model", "mosa", "--model_args", "model=organism,steps=7", "--tasks", "mosa_tiny_mc", "--include_path", str(tmp_path)]
    )
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "mosa: error: steps=7 must be a multiple of the number of blocks (gen_length/block_length = 4)"
    )


def test_the_declared_entry_point_is_the_model():
    """lm-eval releases that discover installed models (the `lm_eval.models` entry point group) find it."""
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["lm_eval.models"]
    assert EntryPoint("mosa", declared["mosa"], "lm_eval.models").load() is MosaLM
