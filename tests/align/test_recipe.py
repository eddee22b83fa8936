"""The shipped LLaDA recipe: `mosa align --preset paper-llada8b` trains on prompts that
`mosa eval --config paper-llada8b` never evaluates, checked on the real benchmark files."""

import argparse

from mosa.align.settings import mosa_config
from mosa.cli.align import resolve_run
from mosa.data import normalise_prompt, resolve_prompts
from mosa.eval import load_config


def texts(prompt_set) -> set[str]:
    return {normalise_prompt(prompt) for prompt in prompt_set.prompts}


def test_the_paper_recipe_never_evaluates_on_a_prompt_it_trains_on():
    run = resolve_run(
        argparse.Namespace(
            preset="paper-llada8b",
            config=None,
            model=None,
            trust_remote_code=None,
            prompts=None,
            benign_prompts=None,
            set=[],
            window=None,
            objective=None,
        )
    )
    training = resolve_prompts(run["prompts"])
    monitored = resolve_prompts(run["monitor"]["harmful"])
    evaluation = load_config("paper-llada8b")
    benchmarks = {
        spec["label"]: resolve_prompts(
            spec["dataset"], limit=evaluation.limit, load_options={k: v for k, v in spec.items() if k not in ("dataset", "label")}
        )
        for spec in evaluation.benchmarks
    }

    assert {label: len(prompts) for label, prompts in benchmarks.items()} == {"advbench": 520, "harmbench": 159}  # whole
    assert [source["term"] for source in training.sources if source["op"] == "+"] == ["strongreject", "donotanswer"]
    assert len(training) == 313 + 939 - 25  # StrongREJECT's copies of 25 AdvBench goals are left out
    for label, prompts in benchmarks.items():
        assert not texts(training) & texts(prompts), label
        assert not texts(monitored) & texts(prompts), label
    assert not texts(monitored) & texts(training)  # the monitor watches prompts the run never trains on
    config = mosa_config(run["mosa"])
    assert config.target_modules is None  # named from the loaded model (q/k/v/o or LLaDA's q/k/v/attn_out)
    assert config.safe_sentences[0] == "therefore, I cannot answer this question."
