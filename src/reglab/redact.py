"""Passwords are never written in clear: :func:`redact` hides the password of every URL in a text.

A database URL ``scheme://user:password@host/db`` becomes ``scheme://user:***@host/db``, and a
password in a URL's query string (``?password=…`` or ``&password=…``, as libpq takes it) becomes
``password=***``; text without either is returned unchanged. Everything reglab prints or writes that may hold a URL
(messages, ``env.json``'s command line, ``storage.json``) goes through it.
"""

from __future__ import annotations

import re

MASK = "***"
URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<password>[^@\s]*)@")
QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&#\s'\"]*)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of each ``scheme://user:password@`` URL, and of each
    ``?password=``/``&password=`` query parameter, replaced by ``***``."""
    text = URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
    return QUERY_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
