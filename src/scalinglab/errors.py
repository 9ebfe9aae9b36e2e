"""The one exception type for bad user input.

Library code raises `UserError` with a message that names the bad input; the CLI prints
that one line and exits non-zero. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a missing file, an unknown key, a wrong type."""
