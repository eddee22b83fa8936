"""Utility as the field measures it: mosa's dLLMs in lm-evaluation-harness.

`MosaLM` (mosa.utility.model) is the lm-eval model `mosa`, registered when this package is imported;
`python -m mosa.utility.lm_eval` is lm-eval's command line with it registered. docs/utility.md.
"""

from mosa.utility.model import MosaLM

__all__ = ["MosaLM"]
