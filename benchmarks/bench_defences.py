"""What the sampler defences change on the organism: ASR under each dLLM-native attack, refusal of
plain prompts and utility, each defence against no defence, in one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_defences.py [--limit 200] [--output runs/bench-defences] [--json out.json]

The organism (mosa's shipped chat dLLM) at its card's settings (gen_length 32, one token per step,
blocks of 8, exact decoding), through `mosa eval --config organism` with `--limit` held-out harmful
prompts per attack and the organism judge, measured as benchmarks/bench_decoding.py measures its
safety table (its `safety` function is reused): the refusal rate of plain prompts, the ASR under
prefill at 0 and 13, pad, dija, anchor at step 4, dialogue and prefix-forcing, and utility (the card's
utility items solved), each with its Wilson interval, and the change from no defence with Newcombe's
interval (it ignores that the prompts are the same, so it errs wide); plus the share of responses a
defence ended. Defences (docs/sampler.md, Defences): annealed-remasking at its default (alpha0 0.3),
and eos-monitor at its default (mean p(EOS) over the block's masked positions > 0.5) and with `max`.
Small-model results: the organism is not trained as A2D trains, so its EOS probability is not the
signal A2D's monitor was made for.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from bench_decoding import comparison_table, safety  # the same measurement (this folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mosa.eval.tables import load_records  # noqa: E402
from mosa.models import load_model  # noqa: E402
from mosa.profiles import model_path  # noqa: E402
from mosa.sampling import defences_label  # noqa: E402

# run directory -> the sampler's defences
SETTINGS = {
    "none": [],
    "annealed": [{"name": "annealed-remasking"}],
    "eos-mean": [{"name": "eos-monitor"}],
    "eos-max": [{"name": "eos-monitor", "reduce": "max"}],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200, help="held-out harmful prompts per attack (default 200)")
    parser.add_argument("--output", type=Path, help="keep the eval runs here (a rerun resumes them); default a temporary folder")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    torch.manual_seed(0)
    lm = load_model(model_path("organism"))
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        base = args.output or Path(scratch)
        for directory, defences in SETTINGS.items():
            found = safety({"defences": defences} if defences else {}, args.limit, base / directory, lm)
            records = load_records(base / directory)
            found["responses a defence ended"] = (sum(bool(record.get("defence_events")) for record in records), len(records))
            figures[defences_label(defences)] = found
            print(f"defences: {defences_label(defences)} done", file=sys.stderr, flush=True)
    print(f"## Defences on the organism (gen_length 32, blocks of 8, exact decoding), {args.limit} prompts per attack\n")
    print(comparison_table(figures, "no defence"))
    if args.json:
        rows = {name: {key: list(value) for key, value in found.items()} for name, found in figures.items()}
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
