"""Pipelines: end-to-end runs that call the stages (organism build, analyze, align, eval) and hand
what they wrote to mosa.report, which renders it. `mosa demo` runs the demo (demo.py)."""
