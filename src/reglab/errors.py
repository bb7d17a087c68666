"""The one exception type for mistakes a user can fix, and the failures of the machine a user can fix.

The command line turns a :class:`UserError` into a single ``error: …`` line and exit code 2, and
so it does an exception :func:`environment_problem` recognizes: a full disk, a read-only or
forbidden place, from the operating system or from SQLite. Everything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import errno
import os

# errno → what the user reads, and what to do about it.
OS_PROBLEMS = {
    errno.ENOSPC: "no space left on the device; free some space, then rerun the same command (a study resumes)",
    errno.EDQUOT: "disk quota exceeded; free some space, then rerun the same command (a study resumes)",
    errno.EROFS: "the file system is read-only; write somewhere else (--out, --dir)",
    errno.EACCES: "permission denied; check the permissions, or use another place (--out, --dir)",
    errno.EPERM: "operation not permitted; check the permissions, or use another place (--out, --dir)",
}
# SQLite's words for the same problems (sqlite3.OperationalError, also as SQLAlchemy's ``orig``).
SQLITE_PROBLEMS = {
    "database or disk is full": errno.ENOSPC,
    "attempt to write a readonly database": errno.EROFS,
    "unable to open database file": errno.EACCES,
}


class UserError(Exception):
    """Bad input: an unknown key, a wrong value, a missing file, data that does not fit."""


def environment_problem(exc: BaseException) -> str | None:
    """One line for an exception that a full disk or a read-only or forbidden place caused (the
    file named when the system names it); None for any other exception."""
    for cause in (exc, getattr(exc, "orig", None), exc.__cause__, exc.__context__):
        if isinstance(cause, OSError) and cause.errno in OS_PROBLEMS:
            where = f" ({os.fsdecode(cause.filename)})" if cause.filename is not None else ""
            return OS_PROBLEMS[cause.errno].replace(";", f"{where};", 1)
        text = str(cause) if cause is not None else ""
        for words, code in SQLITE_PROBLEMS.items():
            if words in text and type(cause).__name__ == "OperationalError":
                return f"cannot write the study database ({words}); " + OS_PROBLEMS[code].split("; ", 1)[1]
    return None
