"""Safety evaluation: benchmarks x attacks x judges on a dLLM (and adapter), resumable, with ASR tables.

    from mosa.eval import load_config, run_eval
    config = load_config("organism", overrides=["limit=50"])
    rows = run_eval(config, "runs/organism")     # asr.md, asr.csv, records.jsonl in runs/organism

The stages, the run directory, the record schema and resume semantics: docs/eval.md.
"""

from mosa.eval.config import EvalConfig, load_config
from mosa.eval.runner import run_eval
from mosa.eval.tables import AsrRow, asr_csv, asr_markdown, asr_rows, load_records, rows_of_runs, write_tables

__all__ = [
    "AsrRow",
    "EvalConfig",
    "asr_csv",
    "asr_markdown",
    "asr_rows",
    "load_config",
    "load_records",
    "rows_of_runs",
    "run_eval",
    "write_tables",
]
