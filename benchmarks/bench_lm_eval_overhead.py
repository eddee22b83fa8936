"""The lm-eval model's overhead: generate_until requests/s through lm-eval against mosa's sampler alone.

    python benchmarks/bench_lm_eval_overhead.py                      # the shipped organism, on the CPU
    python benchmarks/bench_lm_eval_overhead.py --prompts 32 --repeats 2   # a quicker run
    python benchmarks/bench_lm_eval_overhead.py --model GSAI-ML/LLaDA-8B-Instruct --device cuda --dtype bfloat16 \\
        --gen-length 256 --steps 256 --block-length 32 --batch-size 8

The same chat prompts (the organism's utility questions), the same model, loaded once, and the same
sampler settings and batches (batch_size prompts a call, longest first), three ways, in this one process:

  sampler      mosa's generate() called directly: each prompt rendered once (lm.chat_text), tokenised,
               left-padded with its attention mask, sampled, decoded (what a user of the sampler writes);
  generate_until  MosaLM.generate_until on lm-eval's requests for those prompts (the wrapper alone:
               tokenising, batching with lm-eval's Collator, stop sequences, the cache hook);
  simple_evaluate lm_eval.simple_evaluate of a local generation task over those prompts with
               --apply_chat_template (everything lm-eval does for a run: the dataset read, requests
               built, the model's answers, exact_match scored), given the loaded model. Not counted:
               the 10-15 s lm-eval's command line spends indexing its own thousands of tasks at start.

The answers must be identical three ways (checked). Each way runs --repeats times, interleaved, and
the fastest run of each is reported (the least disturbed by other work on the machine), as requests/s
and as the ratio to the sampler's. The issue's floor: generate_until within 10% of the sampler.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mosa.models import load_model  # noqa: E402
from mosa.organism.corpus import utility_items  # noqa: E402
from mosa.profiles import find_profile, model_path  # noqa: E402
from mosa.sampling import generate  # noqa: E402
from mosa.utility import MosaLM  # noqa: E402

TASK = "bench_lm_eval_overhead"


def sampler_answers(lm, prompts: list[str], config, batch_size: int) -> list[str]:
    """mosa's sampler on the prompts, each rendered once by the chat template, longest first in
    left-padded batches of batch_size, each answer cut at its first EOS or EoT (as an lm-eval
    generation ends)."""
    texts = {prompt: lm.chat_text(prompt) for prompt in prompts}
    ids = {prompt: lm.tokenizer(texts[prompt], add_special_tokens=False)["input_ids"] for prompt in prompts}
    ordered = sorted(prompts, key=lambda prompt: (-len(ids[prompt]), texts[prompt]))
    answers = {}
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        width = max(len(ids[prompt]) for prompt in batch)
        input_ids = torch.full((len(batch), width), lm.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, prompt in enumerate(batch):
            input_ids[row, width - len(ids[prompt]) :] = torch.tensor(ids[prompt])
            attention_mask[row, width - len(ids[prompt]) :] = 1
        output = generate(lm.module, input_ids.to(lm.device), attention_mask.to(lm.device), config=config)
        for prompt, response in zip(batch, output.response.tolist()):
            ends = [i for i, token in enumerate(response) if token in (lm.eos_id, lm.eot_id)]
            answers[prompt] = lm.tokenizer.decode(response[: ends[0]] if ends else response, skip_special_tokens=True)
    return [answers[prompt] for prompt in prompts]


def wrapper_answers(model: MosaLM, prompts: list[str]) -> list[str]:
    from lm_eval.api.instance import Instance

    requests = [
        Instance("generate_until", {}, (model.apply_chat_template([{"role": "user", "content": p}]), {"until": []}), 0)
        for p in prompts
    ]
    return model.generate_until(requests, disable_tqdm=True)


def evaluator_answers(model: MosaLM, folder: Path) -> list[str]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    results = simple_evaluate(
        model=model,
        tasks=[TASK],
        task_manager=TaskManager(include_path=str(folder), include_defaults=False),
        apply_chat_template=True,
        log_samples=True,
        verbosity="ERROR",
    )
    samples = sorted(results["samples"][TASK], key=lambda sample: sample["doc_id"])
    return [sample["resps"][0][0] for sample in samples]


def write_task(folder: Path, prompts: list[str]) -> None:
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": prompt, "answer": ""}) + "\n" for prompt in prompts))
    (folder / "task.yaml").write_text(
        f"task: {TASK}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        "output_type: generate_until\ndoc_to_text: '{{prompt}}'\ndoc_to_target: '{{answer}}'\n"
        "generation_kwargs:\n  until: []\n  do_sample: false\nmetric_list:\n  - metric: exact_match\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="organism")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--prompts", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gen-length", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--block-length", type=int)
    args = parser.parse_args()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)

    profile = find_profile(args.model)
    settings = profile.sampler_defaults(args.model) if profile else {}
    chosen = {"gen_length": args.gen_length, "steps": args.steps, "block_length": args.block_length}
    settings.update({name: value for name, value in chosen.items() if value is not None})
    lm = load_model(model_path(args.model), dtype=args.dtype, device=args.device)
    model = MosaLM(model=lm, batch_size=args.batch_size, **settings)
    config = model.sampler
    prompts = [item.prompt for item in utility_items()][: args.prompts]

    with tempfile.TemporaryDirectory() as folder:
        write_task(Path(folder), prompts)
        ways = {
            "sampler": lambda: sampler_answers(lm, prompts, config, args.batch_size),
            "generate_until": lambda: wrapper_answers(model, prompts),
            "simple_evaluate": lambda: evaluator_answers(model, Path(folder)),
        }
        best, answers = {name: float("inf") for name in ways}, {}
        for _ in range(args.repeats):
            for name, run in ways.items():
                start = time.perf_counter()
                answers[name] = run()
                best[name] = min(best[name], time.perf_counter() - start)

    identical = answers["sampler"] == answers["generate_until"] == answers["simple_evaluate"]
    threads = torch.get_num_threads()
    print(
        f"model {args.model} on {args.device} ({threads} threads), gen_length/steps/block_length "
        f"{config.gen_length}/{config.steps}/{config.block_length}, {len(prompts)} chat prompts, batch {args.batch_size}, "
        f"best of {args.repeats}; answers identical three ways: {'yes' if identical else 'NO'}"
    )
    print("| way | seconds | requests/s | vs sampler |\n|---|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {len(prompts) / seconds:.1f} | {best['sampler'] / seconds:.3f}x |")
    if not identical:
        sys.exit("the answers differ between the ways: the wrapper does not reproduce the sampler")


if __name__ == "__main__":
    main()
