"""``reglab ARGS`` through the command line's own entry point, in the test's process."""

import sys


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``reglab ARGS`` through ``reglab.cli.main``: (exit code, stdout, stderr)."""
    from reglab.cli import main

    monkeypatch.setattr(sys, "argv", ["reglab", *args])
    try:
        main()
        code = 0
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
