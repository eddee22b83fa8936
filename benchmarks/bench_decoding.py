"""What the fast approximate decodings buy in speed and cost in safety, each against exact, in one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_decoding.py [--limit 200] [--output runs/bench-decoding] [--json out.json]

(one thread: on a machine shared with other jobs, torch's threads wait on each other and the
timings scatter by tens of times.)

Decodings (mosa.sampling.fast): exact; threshold 0.9; prefix-cache and dual-cache with the steps'
schedule; prefix-cache and dual-cache with threshold 0.9.

1. Speed, on the organism's weights (mosa's shipped chat dLLM: LLaDA's layer structure, that is a
   Llama block with RMSNorm, SwiGLU MLP, rotary positions and full attention, at width 128, 3 layers,
   4 heads, MLP 512, vocabulary 1,548, 1.18M parameters) at gen_length 256, steps 256 for exact,
   blocks of 32, fp32, 4 prompts in one batch (2 held-out harmful, 2 utility). The organism was
   trained on 32-token responses with positions up to 256, so its position limit is raised to 512
   (rotary positions extend) and what it writes past its answer means little: this part measures
   tokens/s, forward passes and token agreement with exact, not quality. Floors: threshold >= 3x
   exact's tokens/s, threshold with a cache >= 5x.
2. Safety, on the organism at its card's settings (gen_length 32, one token per step for exact,
   blocks of 8), through `mosa eval --config organism` with `--limit` held-out harmful prompts per
   attack: the refusal rate of plain prompts, the ASR under each dLLM-native attack (prefill at 0 and
   13, pad, dija, anchor at step 4, dialogue, prefix-forcing; organism judge), and utility (the card's
   utility items solved), each with its Wilson interval, and the change from exact with Newcombe's
   interval (mosa.stats; it ignores that the prompts are the same, so it errs wide).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from mosa.eval import load_config, run_eval  # noqa: E402
from mosa.eval.tables import attack_variant, load_records  # noqa: E402
from mosa.models import load_model  # noqa: E402
from mosa.organism.corpus import utility_items  # noqa: E402
from mosa.profiles import model_path  # noqa: E402
from mosa.sampling import decoding_label, generate  # noqa: E402
from mosa.stats import newcombe_interval, wilson_interval  # noqa: E402

DECODINGS = [
    {},
    {"decoding": "threshold", "threshold": 0.9},
    {"decoding": "prefix-cache"},
    {"decoding": "dual-cache"},
    {"decoding": "prefix-cache", "threshold": 0.9},
    {"decoding": "dual-cache", "threshold": 0.9},
]
FLOORS = {"threshold": 3.0, "cache with threshold": 5.0}


def label(settings: dict) -> str:
    return decoding_label(settings.get("decoding", "exact"), settings.get("threshold"))


def speed(lm, prompts: list[str], rounds: int) -> list[dict]:
    """Each decoding timed `rounds` times, the decodings taking turns (so that a burst of load on a
    shared machine hits them alike); the fastest round counts."""
    lm.module.config.max_position_embeddings = 512  # see the module docstring
    input_ids, attention_mask = lm.encode_chat(prompts, 256)
    generate(lm.module, input_ids, attention_mask, config=lm.sampler_config(gen_length=32, steps=1, block_length=32))  # warm-up
    outputs, seconds = {}, {}
    for _ in range(rounds):
        for settings in DECODINGS:
            config = lm.sampler_config(gen_length=256, steps=256, block_length=32, **settings)
            start = time.perf_counter()
            outputs[label(settings)] = generate(lm.module, input_ids, attention_mask, config=config)
            elapsed = time.perf_counter() - start
            seconds[label(settings)] = min(elapsed, seconds.get(label(settings), elapsed))
    exact = outputs["exact"].response
    rows = [
        {
            "decoding": name,
            "seconds": seconds[name],
            "tokens_per_s": out.response.numel() / seconds[name],
            "forward_passes": out.forward_passes,
            "agreement": float((out.response == exact).float().mean()),
        }
        for name, out in outputs.items()
    ]
    for row in rows:
        row["speed_up"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
    return rows


def safety(settings: dict, limit: int, output: Path, lm) -> dict:
    """Refusal, ASR per attack and utility of the organism under one decoding; counts (successes, n)."""
    overrides = [f"limit={limit}"] + [f"sampler.{key}={value}" for key, value in settings.items()]
    run_eval(load_config("organism", overrides), output, progress=False, log=lambda message: None)
    records = load_records(output)
    figures: dict[str, tuple[int, int]] = {}
    plain = [record for record in records if record["attack"] == "none"]
    figures["refusal (plain prompts)"] = (sum(r["verdicts"][0]["label"] == "refusal" for r in plain), len(plain))
    for record in records:
        name = f"ASR {attack_variant(record)}"
        successes, n = figures.get(name, (0, 0))
        figures[name] = (successes + (record["verdicts"][0]["harmful"] is True), n + 1)
    items = utility_items(0)
    config = lm.sampler_config(gen_length=32, steps=32, block_length=8, **settings)
    answers = [lm.decode_response(row) for row in lm.sample_response_ids([item.prompt for item in items], config)]
    figures["utility (items solved)"] = (sum(answer == item.answer for answer, item in zip(answers, items)), len(items))
    passes = [record["forward_passes"] for record in records if record["forward_passes"] is not None]
    figures["forward passes per batch (mean)"] = (sum(passes), len(passes))
    return figures


def percent_with_interval(successes: int, n: int) -> str:
    low, high = wilson_interval(successes, n)
    return f"{100 * successes / n:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def change(counts: tuple[int, int], exact: tuple[int, int]) -> str:
    low, high = newcombe_interval(*counts, *exact)
    return f"{100 * (counts[0] / counts[1] - exact[0] / exact[1]):+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def comparison_table(figures: dict, baseline: str) -> str:
    """A markdown table: a row per figure, the first setting's rate, then each other setting's rate
    and its change against the first, with their intervals."""
    names = list(figures)
    lines = ["| figure | " + baseline + " | " + " | ".join(f"{name}: rate, change" for name in names[1:]) + " |"]
    lines.append("|---|---|" + "---|" * (len(names) - 1))
    first = figures[names[0]]
    for key, counts in first.items():
        if key.startswith("forward passes"):
            cells = [f"{found[key][0] / found[key][1]:.1f}" for found in figures.values()]
        else:
            cells = [percent_with_interval(*counts)]
            cells += [f"{percent_with_interval(*figures[name][key])}, {change(figures[name][key], counts)}" for name in names[1:]]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines.append(f"\nRates: Wilson 95% intervals; changes (points against {baseline}): Newcombe's 95% interval.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200, help="held-out harmful prompts per attack (default 200)")
    parser.add_argument("--output", type=Path, help="keep the eval runs here (a rerun resumes them); default a temporary folder")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--rounds", type=int, default=2, help="timings per decoding, taking turns; the fastest counts")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    lm = load_model(model_path("organism"))
    results: dict = {}

    if not args.skip_speed:
        held_out = json.loads((Path(model_path("organism")) / "held_out_harmful.json").read_text())
        prompts = held_out[:2] + [item.prompt for item in utility_items(0)[:2]]
        rows = speed(load_model(model_path("organism")), prompts, args.rounds)
        results["speed"] = rows
        print("## Speed: organism weights, gen_length 256, blocks of 32, batch 4, fp32\n")
        print("| decoding | forward passes | seconds | tokens/s | speed-up | tokens as exact |")
        print("|---|---:|---:|---:|---:|---:|")
        for row in rows:
            print(
                f"| {row['decoding']} | {row['forward_passes']} | {row['seconds']:.1f} | {row['tokens_per_s']:.1f} | "
                f"{row['speed_up']:.2f}x | {100 * row['agreement']:.1f}% |"
            )
        by_name = {row["decoding"]: row["speed_up"] for row in rows}
        cached = max(by_name["prefix-cache, threshold 0.9"], by_name["dual-cache, threshold 0.9"])
        verdicts = {"threshold": by_name["threshold 0.9"], "cache with threshold": cached}
        results["floors"] = {name: {"measured": value, "floor": FLOORS[name]} for name, value in verdicts.items()}
        for name, value in verdicts.items():
            print(f"\nfloor {name} >= {FLOORS[name]:g}x: {value:.2f}x, {'met' if value >= FLOORS[name] else 'MISSED'}")

    with tempfile.TemporaryDirectory() as scratch:
        base = args.output or Path(scratch)
        figures = {}
        for settings in DECODINGS:
            name = label(settings)
            figures[name] = safety(settings, args.limit, base / name.replace(", ", "_").replace(" ", "-"), lm)
            print(f"safety: {name} done", file=sys.stderr, flush=True)
    results["safety"] = {name: {key: list(value) for key, value in found.items()} for name, found in figures.items()}
    print(f"\n## Safety: the organism at its card's settings (gen_length 32, blocks of 8), {args.limit} prompts per attack\n")
    print(comparison_table(figures, "exact"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
