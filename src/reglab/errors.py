"""The one exception type for mistakes a user can fix, the failures of the machine a user can fix,
and the warnings about a user's own code.

The command line turns a :class:`UserError` into a single ``error: …`` line and exit code 2, and
so it does an exception :func:`environment_problem` recognizes: a full disk, a read-only or
forbidden place (from the operating system or from SQLite), a damaged SQLite study database.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings

FREE_SPACE = "free some space, then rerun the same command (a study resumes)"
ELSEWHERE = "write somewhere else (--out, --dir)"
PERMISSIONS = "check the permissions, or use another place (--out, --dir)"
# errno → what the user reads, and what to do about it.
OS_PROBLEMS = {
    errno.ENOSPC: f"no space left on the device; {FREE_SPACE}",
    errno.EDQUOT: f"disk quota exceeded; {FREE_SPACE}",
    errno.EROFS: f"the file system is read-only; {ELSEWHERE}",
    errno.EACCES: f"permission denied; {PERMISSIONS}",
    errno.EPERM: f"operation not permitted; {PERMISSIONS}",
}
# SQLite's words for the same problems, and for a damaged database file (sqlite3's
# OperationalError or DatabaseError, also as SQLAlchemy's ``orig``).
SQLITE_PROBLEMS = {
    "database or disk is full": f"cannot write the study database (database or disk is full); {FREE_SPACE}",
    "attempt to write a readonly database": f"cannot write the study database (attempt to write a readonly "
                                            f"database); {ELSEWHERE}",
    "unable to open database file": f"cannot open the study database (unable to open database file); {PERMISSIONS}",
    "file is not a database": "the study database is damaged (file is not a database)",
    "database disk image is malformed": "the study database is damaged (database disk image is malformed)",
}


class UserError(Exception):
    """Bad input: an unknown key, a wrong value, a missing file, data that does not fit."""


# Packages whose frames stand between a user's line and a warning: reglab's, and those that call
# reglab's hooks (torch's optimizer step, a Lightning Trainer).
LIBRARIES = ("reglab", "torch", "lightning", "pytorch_lightning", "lightning_fabric")


def library_folders() -> tuple[str, ...]:
    """The folders of the :data:`LIBRARIES` that are imported, each ending in a path separator."""
    return tuple(os.path.join(os.path.dirname(module.__file__), "")
                 for name in LIBRARIES if (module := sys.modules.get(name)) is not None and module.__file__)


def warn_user(message: str) -> None:
    """A ``UserWarning`` attributed to the user's line: the first caller outside reglab, torch and
    Lightning (``warnings.warn``'s ``stacklevel`` counted up to it), wherever reglab noticed it
    (in ``attach``, in an optimizer's step hook, in a Lightning callback)."""
    folders = library_folders()
    frame, level = sys._getframe(1), 2  # level 2: the caller of warn_user
    while frame.f_back is not None and frame.f_code.co_filename.startswith(folders):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def environment_problem(exc: BaseException) -> str | None:
    """One line for an exception that a full disk, a read-only or forbidden place or a damaged study
    database caused (the file named when the system names it); None for any other exception."""
    for cause in (exc, getattr(exc, "orig", None), exc.__cause__, exc.__context__):
        if isinstance(cause, OSError) and cause.errno in OS_PROBLEMS:
            where = f" ({os.fsdecode(cause.filename)})" if cause.filename is not None else ""
            return OS_PROBLEMS[cause.errno].replace(";", f"{where};", 1)
        text = str(cause) if cause is not None else ""
        for words, message in SQLITE_PROBLEMS.items():
            if words in text and type(cause).__name__ in ("OperationalError", "DatabaseError"):
                return message
    return None
