"""Run a few MOSA steps on a checkpoint; launched by test_distributed.py with and without
`accelerate launch`. Usage: ddp_run.py MODEL_DIR PROMPTS_JSON OUTPUT_DIR BATCH_SIZE"""

import json
import sys

from mosa.align.trainer import MosaConfig, train_mosa
from mosa.models import load_model

model_dir, prompts_file, output_dir, batch_size = sys.argv[1:]
prompts = json.loads(open(prompts_file).read())
config = MosaConfig(
    response_length=32, window=(8, 24), batch_size=int(batch_size), grad_accum=2, max_steps=3, lr=2e-3, max_grad_norm=1.0,
    lora_r=4, lora_alpha=8, save_every=3, safe_sentences=("i cannot help with that .",), harmful_sentences=("step 2 :",),
)
train_mosa(load_model(model_dir), prompts, config, output_dir, progress=False)
