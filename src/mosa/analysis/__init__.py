"""The paper's three analyses (Xie et al., arXiv 2508.12398, section 3), each a function that
returns a JSON-able record and a function that draws it as a PNG. Details: docs/analysis.md.

    A  prefill_position  attack success against the response position of a prefilled phrase
    B  gcg_position      GCG's loss and success when its target phrase is aimed at position 0 or later
    C  decode_order      the order in which the response is unmasked, benign against harmful prompts

    options = PrefillPositionOptions.for_organism()          # or PrefillPositionOptions() for LLaDA
    behaviours = load_prompts(options.harmful, options.limit, model="organism")
    result = prefill_position(lm, behaviours, options, model_name="organism")
    write_json(result, "prefill-position.json"); plot_prefill_position(result, "prefill-position.png")
"""

from mosa.analysis.common import ORGANISM_HELD_OUT, ORGANISM_UTILITY, CommonOptions, load_prompts, write_json
from mosa.analysis.decode_order import DecodeOrderOptions, decode_order, plot_decode_order
from mosa.analysis.gcg_position import GcgPositionOptions, gcg_position, plot_gcg_position
from mosa.analysis.prefill_position import PrefillPositionOptions, plot_prefill_position, prefill_position
from mosa.stats import kendall_tau, mean_and_spread, wilson_interval

__all__ = [
    "ORGANISM_HELD_OUT",
    "ORGANISM_UTILITY",
    "CommonOptions",
    "DecodeOrderOptions",
    "GcgPositionOptions",
    "PrefillPositionOptions",
    "decode_order",
    "gcg_position",
    "kendall_tau",
    "load_prompts",
    "mean_and_spread",
    "plot_decode_order",
    "plot_gcg_position",
    "plot_prefill_position",
    "prefill_position",
    "wilson_interval",
    "write_json",
]
