"""`mosa-lm-eval ARGS` (or `python -m mosa.utility.lm_eval ARGS`): lm-eval's own command line, with
mosa's model registered.

    mosa-lm-eval --model mosa --model_args model=organism --tasks TASK [lm-eval's options]

lm-eval 0.4.13 finds models only in its own registry: nothing installed beside it can add one to its
`lm_eval` command. This module registers `mosa` (by importing mosa.utility.model) and then runs that
very command line, so every lm-eval option works as documented by lm-eval. A mosa error (bad
model_args, a context too long) is one line, `mosa: error: ...`, and exit code 2. lm-eval releases
that discover installed models by the `lm_eval.models` entry point, which mosa declares, run
`lm_eval --model mosa` directly.
"""

from __future__ import annotations

import sys

from mosa.errors import MosaError


def main(argv: list[str] | None = None) -> int:
    from lm_eval.__main__ import cli_evaluate

    import mosa.utility.model  # noqa: F401  (registers the model "mosa")

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    try:
        cli_evaluate()
    except MosaError as error:
        print(f"mosa: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
