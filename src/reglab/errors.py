"""The one exception type for mistakes a user can fix.

The command line turns a :class:`UserError` into a single ``error: …`` line and exit code 2.
Everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: an unknown key, a wrong value, a missing file, data that does not fit."""
