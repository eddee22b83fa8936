"""The one exception type that user-facing code raises for bad input, and the warning type beside it.

The command line turns a `MosaError` into a single line on stderr and a non-zero exit, so its
message must name the offending parameter and, where there is one, the fix. A `MosaWarning` (rows
dropped from a data file, say) is printed as one line too, `mosa: warning: ...`, and the work goes on.
"""


class MosaError(ValueError):
    """Bad input or configuration, reported to the user as one line."""


class MosaWarning(UserWarning):
    """Something the user should know that does not stop the work; the command line prints it as one line."""
