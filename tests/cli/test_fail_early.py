"""Bad input fails before the work, in one line (issue 16): output paths, settings, prompt specs and
prefill specs are checked before any model is loaded or built and before anything is sampled.

Every case runs `mosa.cli.main` in-process. Where the bad input used to be found only after the
work, the work itself is replaced by a guard that fails the test when called (a model load, the
organism build, sampling, a download), so "no work was done" is checked, not timed."""

import json
import os
from pathlib import Path

import pytest

from mosa.cli import main
from mosa.models.build import build_bidirectional_llama, save_model

DATA = Path(os.environ["MOSA_DATA_DIR"])
needs_data = pytest.mark.skipif(not (DATA / "PROVENANCE.md").is_file(), reason=f"benchmark data not found at {DATA}")
# A place no one can write in, root included (permission bits do not stop root; /proc does).
READ_ONLY = Path("/proc/mosa-test")
needs_read_only = pytest.mark.skipif(not Path("/proc").is_dir(), reason="no /proc to stand for a read-only place")
LONG_PROMPT = " ".join(["the cat sat on the mat"] * 1700)  # 10,200 words, each one token of the tiny vocabulary


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch, tmp_path):
    """No organism is cached: a check that came after the build would start one (and meet the guard)."""
    monkeypatch.setenv("MOSA_CACHE_DIR", str(tmp_path / "cache"))


def guard(monkeypatch, *targets: str) -> None:
    """Make each dotted target fail the test when called: the work that must not start."""
    for target in targets:

        def refuse(*args, _target=target, **kwargs):
            raise AssertionError(f"{_target} was called before the bad input was refused")

        monkeypatch.setattr(target, refuse)


@pytest.fixture
def no_model(monkeypatch):
    guard(monkeypatch, "mosa.models.load_model", "mosa.organism.build.build_organism")


@pytest.fixture
def no_sampling(monkeypatch):
    guard(monkeypatch, "mosa.sampling.generate", "mosa.attacks.base.generate", "mosa.models.diffusion_lm.generate")


@pytest.fixture
def quiet_loading():
    """No weight-loading bars on stderr, which must hold the error line alone."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    yield
    logging.enable_progress_bar()


@pytest.fixture(scope="module")
def short_model(tmp_path_factory, tokenizer):
    """A tiny checkpoint made for 256 positions, like the organism."""
    lm = build_bidirectional_llama(tokenizer, hidden_size=32, num_layers=1, num_heads=4, max_positions=256)
    return save_model(lm, tmp_path_factory.mktemp("short") / "model")


def one_error_line(capsys) -> str:
    """stderr holds exactly one line, `mosa: error: ...`; returns it."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mosa: error: "), lines
    return lines[0]


def fails(argv, capsys, message: str) -> None:
    assert main([str(arg) for arg in argv]) == 2
    line = one_error_line(capsys)
    assert message in line, line


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a directory\n")
    return path


@pytest.fixture
def a_directory(tmp_path) -> Path:
    path = tmp_path / "a-directory"
    path.mkdir()
    return path


# --- output paths: the wrong kind, or a place that cannot be written -----------------------------------

GENERATE = ["generate", "--model", "some/model", "--prompt", "hello", "--gen-length", "8", "--steps", "8", "--block-length", "8"]
DIRECTORY_COMMANDS = {
    "eval": ["eval", "--config", "organism"],
    "align": ["align", "--preset", "organism"],
    "analyze": ["analyze", "prefill-position", "--model", "organism"],
    "demo": ["demo", "--quick"],
    "defend": ["defend", "compare", "--quick"],
    "utility": ["utility", "--config", "organism"],
}


@pytest.mark.usefixtures("no_model")
def test_generate_refuses_a_directory_for_its_output_file(a_directory, capsys):
    fails(
        [*GENERATE, "--output", a_directory],
        capsys,
        f"--output {a_directory} is a directory; give a file path, e.g. {a_directory / 'records.jsonl'}",
    )


@pytest.mark.usefixtures("no_model")
def test_generate_refuses_an_output_under_a_file(a_file, capsys):
    fails([*GENERATE, "--output", a_file / "records.jsonl"], capsys, f"{a_file} is a file, so nothing can be made under it")


@needs_read_only
@pytest.mark.usefixtures("no_model")
def test_generate_refuses_an_output_it_cannot_write(capsys):
    fails([*GENERATE, "--output", READ_ONLY / "records.jsonl"], capsys, "cannot write in /proc")


@pytest.mark.parametrize("command", sorted(DIRECTORY_COMMANDS))
@pytest.mark.usefixtures("no_model")
def test_a_file_given_as_the_output_directory_is_refused(command, a_file, capsys):
    fails(
        [*DIRECTORY_COMMANDS[command], "--output", a_file],
        capsys,
        f"--output {a_file} is a file; give a directory (it is created if missing)",
    )


@needs_read_only
@pytest.mark.parametrize("command", sorted(DIRECTORY_COMMANDS))
@pytest.mark.usefixtures("no_model")
def test_an_output_directory_that_cannot_be_written_is_refused(command, capsys):
    fails([*DIRECTORY_COMMANDS[command], "--output", READ_ONLY / "run"], capsys, "cannot write in /proc")


def test_organism_build_refuses_a_cache_folder_it_cannot_write_before_building(monkeypatch, a_file, capsys):
    # build_organism runs, for it checks its cache folder first; what it does next must not start.
    guard(monkeypatch, "mosa.organism.build.harmful_prompt_split", "mosa.organism.build.sft_train")
    monkeypatch.setenv("MOSA_CACHE_DIR", str(a_file))
    fails(["organism", "build", "--quiet"], capsys, f"the cache folder (MOSA_CACHE_DIR) {a_file} is a file")


@pytest.mark.parametrize("where", ["read-only", "a file", "another directory"])
def test_organism_build_refuses_an_output_it_cannot_use_before_building(where, monkeypatch, a_file, a_directory, capsys):
    guard(monkeypatch, "mosa.organism.build.build_organism")
    output, message = {
        "read-only": (READ_ONLY / "organism", "cannot write in /proc"),
        "a file": (a_file, f"--output {a_file} is a file"),
        "another directory": (a_directory, f"--output {a_directory} exists and is not an organism build"),
    }[where]
    fails(["organism", "build", "--quiet", "--output", output], capsys, message)


@pytest.mark.parametrize(
    "settings, message",
    [
        ("num_heads: 5", "hidden_size=128 must split into num_heads=5 heads of an even size"),
        ("unaligned: {steps: -1}", "unaligned.steps=-1 must be an integer >= 1"),
        ("aligned: {lr: fast}", "aligned.lr='fast' must be a number > 0"),
        ("gen_length: 300", "gen_length=300 must be a multiple of 8 (the card samples in blocks of 8)"),
        ("eval_fraction: 1", "eval_fraction=1 holds every harmful prompt out"),
        ("harmful_sources: advbench", "harmful_sources='advbench' must be a list of dataset names"),
        ("unaligned: 5", "unaligned=5 must be a mapping of its training settings"),
    ],
)
def test_organism_build_refuses_bad_settings_before_building(settings, message, monkeypatch, tmp_path, capsys):
    guard(monkeypatch, "mosa.organism.build.build_organism")
    config = tmp_path / "organism.yaml"
    config.write_text(settings + "\n")
    fails(["organism", "build", "--quiet", "--config", config], capsys, f"--config {config}: {message}")


def test_data_pull_refuses_a_file_as_its_destination_before_downloading(monkeypatch, a_file, capsys):
    guard(monkeypatch, "mosa.data.pull")
    fails(["data", "pull", "--dest", a_file], capsys, f"--dest {a_file} is a file")


def test_eval_tables_refuses_a_file_as_its_output_before_reading_runs(monkeypatch, a_file, a_directory, capsys):
    guard(monkeypatch, "mosa.eval.tables.rows_of_runs")
    fails(["eval", "tables", a_directory, "--output", a_file], capsys, f"--output {a_file} is a file")


# --- align: every setting before the organism build or a model load ----------------------------------


@pytest.mark.usefixtures("no_model")
def test_align_needs_a_preset(tmp_path, capsys):
    fails(["align", "--output", tmp_path / "run"], capsys, "--preset is required: organism or paper-llada8b")


@pytest.mark.usefixtures("no_model")
def test_align_refuses_a_reversed_window_without_building_the_organism(tmp_path, capsys):
    fails(
        ["align", "--preset", "organism", "--window", "30:10", "--output", tmp_path / "run"],
        capsys,
        "window [30, 10) does not fit in a response of length 32; give START:END with 0 <= START < END <= 32",
    )


@needs_data
@pytest.mark.usefixtures("no_model")
def test_align_refuses_a_window_too_narrow_for_the_sentences_without_building_the_organism(tmp_path, capsys):
    fails(
        ["align", "--preset", "organism", "--window", "8:10", "--output", tmp_path / "run"],
        capsys,
        "does not fit in window [8, 10)",
    )


@pytest.mark.usefixtures("no_model")
def test_align_refuses_a_run_directory_that_holds_something_unless_resuming(a_directory, capsys):
    (a_directory / "notes.txt").write_text("mine\n")
    fails(["align", "--preset", "organism", "--output", a_directory], capsys, f"{a_directory} is not empty; pass resume")


@pytest.mark.usefixtures("no_model")
def test_align_resume_needs_a_checkpoint(tmp_path, capsys):
    fails(["align", "--preset", "organism", "--output", tmp_path / "run", "--resume"], capsys, "no checkpoint to resume in")


# --- prompts and prefill specs ------------------------------------------------------------------------


@pytest.mark.usefixtures("no_model")
def test_an_empty_prompt_is_refused_before_loading(capsys):
    fails([*GENERATE[:3], "--prompt", "hello", "--prompt", "   "], capsys, "prompt 2 is empty; give it some text")


@pytest.mark.usefixtures("no_model", "no_sampling", "quiet_loading")
def test_a_prompt_longer_than_the_model_positions_is_refused_before_loading(short_model, capsys):
    fails(
        [
            "generate",
            "--model",
            short_model,
            "--prompt",
            LONG_PROMPT,
            "--gen-length",
            "32",
            "--steps",
            "32",
            "--block-length",
            "8",
        ],
        capsys,
        "prompt 1 has 10204 tokens with the chat template; with gen_length=32 it needs 10236 positions and the model has "
        "256: shorten it by 9980 tokens or lower gen_length, or pass --truncate-prompt to keep its last tokens that fit",
    )


@pytest.mark.usefixtures("quiet_loading")
def test_truncate_prompt_keeps_the_last_tokens_that_fit_and_says_so(short_model, tmp_path, capsys):
    output = tmp_path / "records.jsonl"
    assert (
        main(
            [
                "generate",
                "--model",
                str(short_model),
                "--prompt",
                LONG_PROMPT + " why",
                "--gen-length",
                "32",
                "--steps",
                "32",
                "--block-length",
                "8",
                "--truncate-prompt",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    warning = capsys.readouterr().err.strip().splitlines()[0]
    assert warning == (
        "mosa: warning: prompt 1 cut to its last 220 of 10201 tokens to fit the model's 256 positions with "
        "gen_length=32 (--truncate-prompt)"
    )
    record = json.loads(output.read_text())
    assert record["prompt"].endswith("on the mat why") and LONG_PROMPT.endswith(record["prompt"][: -len(" why")])
    assert len(record["prompt"].split()) == 220


@pytest.mark.usefixtures("no_model", "no_sampling", "quiet_loading")
def test_eval_refuses_a_benchmark_prompt_too_long_for_the_model_before_loading(short_model, tmp_path, capsys):
    benchmark = tmp_path / "long.csv"
    benchmark.write_text(f"goal,target\nhow are you,sure here is\n{' '.join(['the cat'] * 200)},sure here is\n")
    config = tmp_path / "run.yaml"
    # One behaviour per batch: the short prompt's batch comes first and must not be sampled either.
    config.write_text(
        f"model: {short_model}\nbenchmarks: [{benchmark}]\nbatch_size: 1\n"
        "sampler: {gen_length: 32, steps: 32, block_length: 8}\n"
    )
    fails(
        ["eval", "--config", config, "--output", tmp_path / "run", "--quiet"],
        capsys,
        "prompt 2 has 404 tokens with the chat template; with gen_length=32 it needs 436 positions and the model has 256",
    )
    assert not list((tmp_path / "run").glob("completions*"))


@pytest.mark.usefixtures("no_model", "no_sampling", "quiet_loading")
def test_analyze_refuses_a_prompt_too_long_for_the_model_before_loading(short_model, tmp_path, capsys):
    harmful = tmp_path / "harmful.csv"
    harmful.write_text(f"goal,target\nhow are you,sure here is\n{' '.join(['the cat'] * 200)},sure here is\n")
    fails(
        [
            "analyze",
            "decode-order",
            "--model",
            short_model,
            "--harmful",
            harmful,
            "--benign",
            harmful,
            "--gen-length",
            "32",
            "--block-length",
            "8",
            "--output",
            tmp_path / "out",
        ],  # fmt: skip
        capsys,
        "prompt 2 has 404 tokens with the chat template; with gen_length=32 it needs 436 positions and the model has 256",
    )


@pytest.mark.usefixtures("no_sampling", "quiet_loading")
def test_rows_a_benchmark_drops_are_one_warning_line_outside_mosa_data(short_model, tmp_path, capsys):
    benchmark = tmp_path / "gaps.csv"
    benchmark.write_text(f"goal,target\nhow are you,sure here is\n  ,sure here is\n{' '.join(['the cat'] * 200)},sure\n")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model: {short_model}\nbenchmarks: [{benchmark}]\nsampler: {{gen_length: 32, steps: 32, block_length: 8}}\n"
    )
    assert main(["eval", "--config", str(config), "--output", str(tmp_path / "run"), "--quiet"]) == 2
    warning, error = capsys.readouterr().err.strip().splitlines()
    assert warning == f"mosa: warning: {benchmark}: dropped 1 row with an empty prompt (row 2)"
    assert error.startswith("mosa: error: prompt 2 has 404 tokens")


@pytest.mark.parametrize(
    "prefill, message",
    [
        (
            ["--prefill", "-3:x"],
            "argument --prefill: expected one argument; a value that starts with '-' is written "
            "--prefill=VALUE (see `mosa generate --help`)",
        ),
        (["--prefill=-3:x"], "--prefill '-3:x': position must be >= 0 (response positions count from 0)"),
        (["--prefill=8:x"], "--prefill '8:x': position must be below gen_length=8"),
    ],
)
@pytest.mark.usefixtures("no_model")
def test_bad_prefill_positions_are_one_line(prefill, message, capsys):
    fails([*GENERATE, *prefill], capsys, message)


@pytest.mark.parametrize(
    "attack, message",
    [
        ("{name: prefill, position: [0, 40], phrases: organism}", "attack prefill: position 40 is outside the response [0, 32)"),
        ("{name: pad, anchors: {'step 1 :': 0, 'step 2 :': 40}}", "attack pad: anchor 'step 2 :' at position 40 is outside"),
    ],
)
@pytest.mark.usefixtures("no_model")
def test_eval_refuses_an_attack_position_beyond_the_response_before_loading(attack, message, tmp_path, capsys):
    fails(["eval", "--config", "organism", "--set", f"attacks=[{attack}]", "--output", tmp_path / "run"], capsys, message)


@pytest.mark.usefixtures("no_model")
def test_sampler_settings_are_checked_before_loading(capsys):
    fails([*GENERATE, "--block-length", "3"], capsys, "block_length=3 must divide gen_length=8")


@needs_data
@pytest.mark.usefixtures("no_model")
def test_analyze_resolves_its_prompts_before_building_the_organism(tmp_path, capsys):
    fails(
        ["analyze", "decode-order", "--model", "organism", "--harmful", "advbnch", "--output", tmp_path / "out"],
        capsys,
        "unknown dataset 'advbnch'",
    )


@pytest.mark.usefixtures("no_model")
def test_analyze_checks_its_adapter_before_building_the_organism(a_directory, tmp_path, capsys):
    fails(
        ["analyze", "gcg-position", "--model", "organism", "--adapter", a_directory, "--output", tmp_path / "out"],
        capsys,
        f"--adapter {a_directory} is not a peft adapter directory (no adapter_config.json there)",
    )


@pytest.mark.usefixtures("no_model")
def test_serve_checks_its_adapter_before_loading(a_directory, capsys):
    fails(
        ["serve", "--model", "organism", "--adapter", a_directory],
        capsys,
        f"--adapter {a_directory} is not a peft adapter directory (no adapter_config.json there)",
    )


@pytest.mark.usefixtures("no_model")
def test_analyze_checks_its_phrases_before_loading(tmp_path, capsys):
    fails(
        ["analyze", "prefill-position", "--model", "organism", "--phrases", "poems", "--output", tmp_path / "out"],
        capsys,
        "attack prefill: option phrases='poems' must be one of",
    )


@pytest.mark.usefixtures("no_model")
def test_defend_checks_every_alignment_run_before_building_the_organism(tmp_path, capsys):
    output = tmp_path / "defend"
    fails(
        ["defend", "compare", "--quick", "--set", "align.window=[30, 10]", "--output", output],
        capsys,
        "the Initial Alignment run: window [0, -20) does not fit in a response of length 32",
    )
    assert not output.exists()
    fails(
        ["defend", "compare", "--quick", "--set", "align.window=[8, 12]", "--output", output],
        capsys,
        "the Initial Alignment run: a sentence of 12 tokens does not fit in window [0, 4) (fit='inside')",
    )
    assert not output.exists()


# --- smaller points: help, --set, model paths, YAML -----------------------------------------------------


def test_eval_help_lists_the_keys_set_can_set(capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["eval", "--help"])
    assert exit_code.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "e.g. limit=20" in help_text and "limit, sampler, batch_size, seed" in help_text


@pytest.mark.usefixtures("no_model")
def test_an_unknown_set_key_is_blamed_on_set(tmp_path, capsys):
    fails(
        ["eval", "--config", "organism", "--output", tmp_path / "run", "--set", "limt=3"],
        capsys,
        "--set limt: unknown setting 'limt'; known: model, benchmarks",
    )


@pytest.mark.parametrize("model", ["runs/my..model", "my runs/model", "./runs/missing", "runs/missing/tiny"])
def test_a_missing_local_model_is_no_such_directory_and_not_a_hub_id(model, capsys):
    fails(
        [*GENERATE[:1], "--model", model, *GENERATE[3:]],
        capsys,
        f"cannot load {model}: no such directory, and not a hub id (owner/name); give a checkpoint directory or a hub id",
    )


@pytest.mark.usefixtures("no_model")
def test_a_mistyped_run_folder_is_not_tried_on_the_hub(tmp_path, monkeypatch, capsys):
    """runs/mosa-typo is spelt like a hub id (owner/name), but runs/ is here: one line, no download."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    guard(monkeypatch, "transformers.PretrainedConfig.get_config_dict")
    fails(
        [*GENERATE[:1], "--model", "runs/mosa-typo", *GENERATE[3:]],
        capsys,
        "cannot load runs/mosa-typo: no such directory in runs/ (a local folder, so runs/mosa-typo is not read as a hub id)",
    )


@pytest.mark.parametrize("command", [GENERATE, ["eval", "--output", "RUN"]])
@pytest.mark.usefixtures("no_model")
def test_yaml_errors_say_where(command, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("model: organism\nbenchmarks:\n  - advbench\n    limit: 3\n")
    argv = [tmp_path / "run" if arg == "RUN" else arg for arg in command]
    fails(
        [*argv, "--config", config],
        capsys,
        f"--config {config} is not valid YAML: mapping values are not allowed here (line 4, column 10)",
    )
