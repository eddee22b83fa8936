"""Configs: the shipped ones, overrides, the environment, and one-line refusals of bad input."""

import pytest

from mosa.attacks import ATTACKS
from mosa.errors import MosaError
from mosa.eval import load_config
from mosa.eval.runner import build_attacks, build_judges
from tests.eval.conftest import mosa_eval, write_config


@pytest.mark.parametrize("name", ["organism", "paper-llada8b", "canvas-llada8b"])
def test_the_shipped_configs_are_valid_and_their_attacks_and_judges_build(name, monkeypatch):
    monkeypatch.delenv("MOSA_JUDGE_URL", raising=False)
    config = load_config(name)
    assert len(build_attacks(config)) == len(config.attacks)
    judges = build_judges(config)
    assert [judge.name for judge in judges] == [spec["name"] for spec in config.judges]


def test_the_paper_config_holds_the_papers_grid_and_judges():
    """Tables 1 and 2: the eight black-box attacks; Table 4: TAP, EPT and AdvPrefix aimed at tokens 20-60;
    the paper's two judging rules; AdvBench and HarmBench whole."""
    config = load_config("paper-llada8b")
    attacks = {spec.get("label", spec["name"]): spec for spec in config.attacks}
    table_1 = ["avatar", "tap", "speakeasy", "aos", "pal", "ept", "dia", "advprefix"]
    table_4 = ["tap-middle", "ept-middle", "advprefix-middle"]
    assert list(attacks) == table_1 + table_4
    assert all(attacks[label]["window"] == [20, 60] and attacks[label]["name"] == label.split("-")[0] for label in table_4)
    assert all("window" not in attacks[label] for label in table_1)
    assert (attacks["tap"]["width"], attacks["tap"]["branching"], attacks["tap"]["depth"]) == (10, 4, 10)
    assert [judge["name"] for judge in config.judges] == ["harm-rubric", "strongreject-strict", "strongreject"]
    assert (config.benchmarks, config.limit) == (
        [{"dataset": "advbench", "label": "advbench"}, {"dataset": "harmbench", "label": "harmbench"}],
        None,
    )


def test_the_judge_endpoint_comes_from_the_environment_and_a_secret_never_does(monkeypatch):
    monkeypatch.setenv("MOSA_JUDGE_URL", "http://127.0.0.1:9/v1")
    judges = load_config("paper-llada8b").judges
    backends = [judge["backend"] for judge in judges if "backend" in judge]
    assert [judge["name"] for judge in judges if "backend" in judge] == ["harm-rubric", "strongreject-strict", "strongreject"]
    assert all(backend["base_url"] == "http://127.0.0.1:9/v1" and backend["model"] == "gpt-4.1" for backend in backends)
    with pytest.raises(MosaError, match=r"\$\{OPENAI_API_KEY\} looks like a secret"):
        load_config("paper-llada8b", ["judges=[{name: strongreject, backend: 'openai:m@${OPENAI_API_KEY}'}]"])
    with pytest.raises(MosaError, match=r"\$\{MOSA_UNSET_VARIABLE\} is used in the config but not set"):
        load_config("organism", ["model=${MOSA_UNSET_VARIABLE}"])


def test_overrides_reach_into_the_sampler_and_flags_win():
    config = load_config("organism", ["sampler.steps=16", "limit=3"], model="other", adapter=None)
    assert config.sampler == {"gen_length": 32, "steps": 16, "block_length": 8}
    assert (config.limit, config.model) == (3, "other")


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "attacks=[none, prefil]",
            "unknown attack 'prefil'; available: " + ", ".join(ATTACKS.names()),  # the list itself: tests/attacks/test_base.py
        ),
        (
            "judges=[keyword]",
            "unknown judge 'keyword'; available: classifier, harm-rubric, keyword-gcg, keyword-long, organism, strongreject, strongreject-strict",
        ),
        ("attacks=[{name: prefill, postion: 3}]", "attack 'prefill' has no option postion; its options: position, phrases, seed"),
        (
            "judges=[{name: keyword-gcg, lists: long}]",
            "judge 'keyword-gcg' has no option lists; it takes none; give its bare name",
        ),
        ("limit=0", "limit=0 leaves no behaviours to evaluate"),
        ("batch_size=two", "batch_size='two' must be a whole number >= 1"),
        ("dtype=float8", "dtype='float8' must be one of auto, float32, bfloat16, float16"),
        ("sampler.steps=7", "sampler: steps=7 must be a multiple of the number of blocks"),
        ("sampler.seed=3", "the seed is the top-level seed"),
        ("benchmark=[advbench]", "--set benchmark: unknown setting 'benchmark'"),
        ("attacks=[none, {name: none}]", "attack 'none' is given twice; give one a label"),
        ("limit", "--set 'limit' must look like KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(settings, tmp_path, capsys, override, message):
    config = write_config(tmp_path, settings)
    assert mosa_eval("--config", config, "--output", tmp_path / "run", "--set", override) == 2
    error = capsys.readouterr().err
    assert error.startswith("mosa: error: ") and error.count("\n") == 1
    assert message in error
    assert not (tmp_path / "run").exists()
