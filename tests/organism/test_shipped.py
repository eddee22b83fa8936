"""The organism that ships with mosa: the one `--model organism` names in every command."""

from mosa.cli import main
from mosa.organism.build import SHIPPED_ORGANISM, OrganismConfig, organism_directory, organism_of
from mosa.organism.card import FLOORS, missed_floors, read_card


def test_the_shipped_organism_meets_every_floor_and_says_how_it_was_built():
    card = read_card(SHIPPED_ORGANISM)
    assert missed_floors(card["figures"]) == {} and set(FLOORS) <= set(card["figures"])
    assert card["figures"]["compliance_prefill_mid"] >= 0.5  # the weakness the demo is about
    build = card["build"]
    assert {"command", "date", "mosa", "torch", "transformers", "tokenizers", "python", "machine"} <= set(build)
    # The default recipe built it, so `mosa organism build` rebuilds the same organism (on this machine's kernels).
    assert organism_of("organism") == OrganismConfig()
    assert organism_directory("organism") == SHIPPED_ORGANISM


def test_generate_runs_the_shipped_organism_with_its_card_sampler(capsys):
    assert main(["generate", "--model", "organism", "--prompt", "what is 3 plus 4 ?", "--show-order"]) == 0
    prompt, response, order = capsys.readouterr().out.splitlines()
    assert (prompt, response) == ("> what is 3 plus 4 ?", "the answer is 7 .")
    commits = [int(token.rpartition("@")[2]) for token in order.split()]
    assert len(commits) == 32 and sorted(commits) == list(range(32))  # 32 tokens, one per step
    assert max(commits[:8]) < min(commits[8:])  # blocks of 8: the first block is committed first


def test_a_flag_overrides_the_card_sampler(capsys):
    assert (
        main(
            [
                "generate",
                "--model",
                "organism",
                "--prompt",
                "what is 3 plus 4 ?",
                "--gen-length",
                "16",
                "--steps",
                "16",
                "--show-order",
            ]
        )
        == 0
    )
    assert len(capsys.readouterr().out.splitlines()[2].split()) == 16


def test_its_card_is_printed_by_name(capsys):
    assert main(["organism", "card", "organism"]) == 0
    out = capsys.readouterr().out
    assert "compliance, prefill 'step 2 :' at response position 13" in out and "BELOW FLOOR" not in out
