"""The one exception type that user-facing code raises for bad input.

The command line turns a `MosaError` into a single line on stderr and a non-zero exit, so its
message must name the offending parameter and, where there is one, the fix.
"""


class MosaError(ValueError):
    """Bad input or configuration, reported to the user as one line."""
