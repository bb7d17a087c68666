"""Where a study lives: an Optuna RDB storage opened from a URL.

* Default: an SQLite file ``studies/<name>/study.db`` (embedded, nothing to set up; workers on one
  machine share it).
* Across machines: a PostgreSQL URL such as ``postgresql+psycopg2://user:pass@host:5432/db``; every
  machine runs ``reglab worker`` against it.

Workers record a heartbeat for their running trials every ``heartbeat`` seconds. A running trial
whose last heartbeat is older than ``grace`` seconds belongs to a worker that died: it is marked
FAIL and the same point × seed × fold is put back in the queue, in one transaction
(``transactions.fail_stale``). Both are set by option or by the environment variables
``REGLAB_HEARTBEAT`` and ``REGLAB_GRACE`` (defaults 5 s and 20 s).

A worker that loses its storage (a PostgreSQL restart, a network cut, an SQLite file locked for
longer than its busy timeout) reconnects and goes on: :func:`reconnecting` retries the failed step
with a growing pause (``RETRY_FIRST`` doubling to ``RETRY_MOST`` seconds) for up to
``REGLAB_RECONNECT`` seconds (default 120), then gives up with one line.

SQLite is made safe for several worker processes by opening every transaction with
``BEGIN IMMEDIATE``: a transaction takes the write lock before it reads, so the check-then-set of
claiming a waiting trial cannot interleave with another worker's (PostgreSQL gets the same
guarantee from Optuna's ``SELECT … FOR UPDATE``).
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

import optuna
import sqlalchemy
from optuna.storages import RDBStorage

from reglab.errors import UserError, environment_problem
from reglab.redact import redact

DEFAULT_HEARTBEAT = 5
DEFAULT_GRACE = 20
CONNECT_TIMEOUT = 4  # seconds per address tried; an unreachable server is reported within 10 s
SQLITE_BUSY_TIMEOUT = 60  # seconds a transaction waits for another one's write lock

SCHEMA_TRIES = 5  # first opens racing to create the tables: the losers retry
DEFAULT_RECONNECT = 120  # seconds a worker keeps trying to reach a storage it lost
RETRY_FIRST, RETRY_MOST = 0.5, 8.0  # seconds between tries: doubling from the first to the most

T = TypeVar("T")

optuna.logging.set_verbosity(optuna.logging.WARNING)


@contextmanager
def quiet_optuna():
    """Silence Optuna's notices that heartbeats and retries are experimental features."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        yield


def default_url(folder: Path) -> str:
    """The SQLite file of a study folder, as an absolute URL (workers may run elsewhere)."""
    return f"sqlite:///{(Path(folder) / 'study.db').resolve()}"


def shown_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    return redact(url)


def without_password(url: str) -> str:
    """The URL with its password left out (after the user name, or as ``?password=`` in the query),
    for files: PostgreSQL then takes the password from ``PGPASSWORD`` or ``~/.pgpass`` (libpq's
    standard places)."""
    u = sqlalchemy.engine.make_url(url)
    query = {k: v for k, v in u.query.items() if k.lower() != "password"}
    bare = sqlalchemy.engine.URL.create(u.drivername, u.username, None, u.host, u.port, u.database, query)
    return bare.render_as_string(hide_password=False)


# A bare ``postgresql://`` takes the first of these drivers that is installed (SQLAlchemy 2.1 would
# take psycopg 3 alone); each with the package that installs it, for the hint when none is.
POSTGRES_DRIVERS = {"psycopg2": "reglab[postgres]", "psycopg": "psycopg[binary]"}


def with_driver(url: str) -> str:
    """``url`` with a bare ``postgresql://`` given the installed PostgreSQL driver; others unchanged."""
    u = sqlalchemy.engine.make_url(url)
    if u.drivername != "postgresql":
        return url
    installed = [d for d in POSTGRES_DRIVERS if importlib.util.find_spec(d) is not None]
    return u.set(drivername=f"postgresql+{installed[0]}").render_as_string(hide_password=False) if installed else url


def driver_hint(url: str) -> str:
    """What to install for the driver that ``url`` names."""
    u = sqlalchemy.engine.make_url(url)
    if u.get_backend_name() != "postgresql":
        return f"install the Python package of the '{u.drivername}' driver"
    driver = u.drivername.partition("+")[2] or "psycopg"
    package = POSTGRES_DRIVERS.get(driver)
    return f"pip install '{package}'" if package else f"install the Python package '{driver}'"


def sqlite_file(url: str) -> Path | None:
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def heartbeat_settings(heartbeat: int | None = None, grace: int | None = None) -> tuple[int, int]:
    """(heartbeat interval, grace period) in whole seconds: the option, else the environment,
    else the defaults. The grace period must exceed the interval."""
    def pick(value: int | None, env: str, default: int) -> int:
        if value is None:
            text = os.environ.get(env)
            try:
                value = int(text) if text else default
            except ValueError:
                raise UserError(f"{env}={text!r} must be a whole number of seconds") from None
        if value < 1:
            raise UserError(f"{env.lower().removeprefix('reglab_')} must be at least 1 second, got {value}")
        return value

    interval = pick(heartbeat, "REGLAB_HEARTBEAT", DEFAULT_HEARTBEAT)
    period = pick(grace, "REGLAB_GRACE", DEFAULT_GRACE)
    if period <= interval:
        raise UserError(f"the grace period ({period} s) must be longer than the heartbeat interval ({interval} s)")
    return interval, period


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` says the storage could not be reached or used for now (the server went
    away, the connection broke, the file is locked), rather than that a request was wrong. Optuna
    wraps SQLAlchemy's errors in ``StorageInternalError``. A full disk, a read-only place or a
    damaged database (:func:`reglab.errors.environment_problem`) is not lost for now: it stays."""
    if environment_problem(exc) is not None:
        return False
    if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ is not None:
        return lost_connection(exc.__cause__)
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))


def reconnect_seconds() -> float:
    text = os.environ.get("REGLAB_RECONNECT")
    try:
        return float(text) if text else DEFAULT_RECONNECT
    except ValueError:
        raise UserError(f"REGLAB_RECONNECT={text!r} must be a number of seconds") from None


def reconnecting(storage: RDBStorage, step: Callable[[], T], echo: Callable[[str], None]) -> T:
    """``step()``, tried again while the storage is unreachable (:func:`lost_connection`), pausing
    ``RETRY_FIRST`` seconds, then twice as long each time up to ``RETRY_MOST``; after
    ``REGLAB_RECONNECT`` seconds a :class:`UserError` (one line). ``step`` must be one
    transaction, or safe to repeat."""
    deadline, pause = None, RETRY_FIRST
    while True:
        try:
            return step()
        except Exception as exc:
            if not lost_connection(exc):
                raise
            reason = redact(str(getattr(exc.__cause__ or exc, "orig", None) or exc).strip().splitlines()[0])
            if deadline is None:
                deadline = time.monotonic() + reconnect_seconds()
                echo(f"lost the storage ({reason}); reconnecting")
            if time.monotonic() > deadline:
                raise UserError(f"gave up on storage '{shown_url(storage.url)}' after {reconnect_seconds():g} s "
                                f"without it: {reason}") from None
            time.sleep(pause)
            pause = min(2 * pause, RETRY_MOST)


def engine_kwargs(url: str) -> dict:
    backend = sqlalchemy.engine.make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT, "isolation_level": None}}
    if backend in ("postgresql", "mysql"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}, "pool_pre_ping": True}
    return {}


def begin_immediate(connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_storage(url: str, kwargs: dict, interval: int, period: int) -> RDBStorage:
    """RDBStorage, retried when a concurrent first open created the tables at the same moment."""
    attempt = 0
    while True:
        try:
            with quiet_optuna():
                return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=interval, grace_period=period)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError) as exc:
            attempt += 1
            racing = isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in str(exc)
            if not racing or attempt == SCHEMA_TRIES:
                raise
            time.sleep(0.2 * attempt)


def open_storage(url: str, heartbeat: int | None = None, grace: int | None = None,
                 must_exist: bool = False) -> RDBStorage:
    """Open (and for a new SQLite file, create) the storage at ``url``.

    Raises :class:`UserError` for a malformed URL, a missing database driver, an unreachable or
    refusing server (within ``CONNECT_TIMEOUT`` seconds), or, with ``must_exist``, an SQLite file
    that is not there."""
    try:
        url = with_driver(url)
        kwargs = engine_kwargs(url)
        path = sqlite_file(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        why = f" ({redact(str(exc))})" if isinstance(exc, ValueError) else ""
        raise UserError(f"storage '{shown_url(url)}' is not a database URL{why} (e.g. sqlite:///study.db or "
                        "postgresql://user@host:5432/db)") from None
    if path is not None:
        if must_exist and not path.is_file():
            raise UserError(f"no study database at {path}")
        if not path.parent.is_dir():
            raise UserError(f"storage '{shown_url(url)}': folder {path.parent} does not exist")
    interval, period = heartbeat_settings(heartbeat, grace)
    try:
        storage = create_storage(url, kwargs, interval, period)
    except ImportError as exc:
        raise UserError(f"storage '{shown_url(url)}' needs a database driver that is not installed "
                        f"({exc.__cause__ or exc}): {driver_hint(url)}") from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ValueError) as exc:
        cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) and exc.__cause__ else exc
        first = redact(str(getattr(cause, "orig", None) or cause).strip().splitlines()[0])
        hint = ""
        parsed = sqlalchemy.engine.make_url(url)
        if "password" in first and parsed.password is None and "password" not in parsed.query:
            hint = " (the URL holds no password: set PGPASSWORD or put it in ~/.pgpass)"
        raise UserError(f"cannot open storage '{shown_url(url)}': {first}{hint}") from None
    if path is not None:
        sqlalchemy.event.listen(storage.engine, "begin", begin_immediate)
    return storage
