"""Run a few MOSA steps on a checkpoint; launched by test_distributed.py with and without
`accelerate launch`. Usage: ddp_run.py MODEL_DIR PROMPTS_JSON OUTPUT_DIR BATCH_SIZE [PART], PART being
`all` (the default), `first-2` (stop after 2 steps, as if killed there) or `rest` (resume)."""

import json
import sys

from mosa.align.trainer import MosaConfig, train_mosa
from mosa.models import load_model

model_dir, prompts_file, output_dir, batch_size, *part = sys.argv[1:]
part = part[0] if part else "all"
prompts = json.loads(open(prompts_file).read())
config = MosaConfig(
    response_length=32,
    window=(8, 24),
    batch_size=int(batch_size),
    grad_accum=2,
    max_steps=3,
    lr=2e-3,
    max_grad_norm=1.0,
    lora_r=4,
    lora_alpha=8,
    save_every=2,
    safe_sentences=("i cannot help with that .",),
    harmful_sentences=("step 2 :",),
)
train_mosa(
    load_model(model_dir),
    prompts,
    config,
    output_dir,
    progress=False,
    stop_after=2 if part == "first-2" else None,
    resume=part == "rest",
)
