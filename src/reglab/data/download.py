"""The cache folder and checksum-verified one-time downloads.

The cache is ``$REGLAB_CACHE`` (default ``~/.cache/reglab``). ``REGLAB_OFFLINE=1`` forbids any
download. A file is kept only once its checksum matches; a file in the cache is checked again
before each use, and one that no longer matches is fetched anew.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from reglab.errors import UserError

TIMEOUT_S = 30
CHUNK = 1 << 20


def cache_dir() -> Path:
    """``$REGLAB_CACHE`` or ``~/.cache/reglab``, created on demand."""
    path = Path(os.environ.get("REGLAB_CACHE") or Path.home() / ".cache" / "reglab").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def offline() -> bool:
    return os.environ.get("REGLAB_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def file_digest(path: Path, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class DownloadError(Exception):
    """No mirror delivered the file (network down or every copy failed its checksum)."""


def fetch(urls: list[str], dest: Path, md5: str) -> Path:
    """Return ``dest`` once it holds a file whose MD5 is ``md5``, downloading it if needed.

    Mirrors are tried in order. A download goes to ``dest.<pid>.part`` and is moved into place only
    when its checksum matches, so a bad or partial file is never kept. Raises :class:`DownloadError`
    when no mirror works.
    """
    if dest.is_file():
        if file_digest(dest) == md5:
            return dest
        dest.unlink(missing_ok=True)  # corrupted in the cache: fetch it again
    if offline():
        raise DownloadError("downloads are disabled (REGLAB_OFFLINE is set)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f"{dest.name}.{os.getpid()}.part")  # one per process
    problems = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                with open(part, "wb") as out:
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            part.unlink(missing_ok=True)
            problems.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        got = file_digest(part)
        if got == md5:
            os.replace(part, dest)
            return dest
        part.unlink(missing_ok=True)
        problems.append(f"{url}: checksum mismatch (md5 {got}, expected {md5})")
    raise DownloadError("; ".join(problems) or "no mirror given")


def require_download(urls: list[str], dest: Path, md5: str, hint: str) -> Path:
    """:func:`fetch`, turning failure into one :class:`UserError` line that ends with ``hint``."""
    try:
        return fetch(urls, dest, md5)
    except DownloadError as exc:
        raise UserError(f"could not download {dest.name} ({exc}); {hint}") from None
