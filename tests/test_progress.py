"""Progress off a terminal: plain lines on stderr, at most every few seconds and at the end."""

from reglab.progress import Progress


def test_plain_lines_off_a_terminal_are_throttled_and_end_with_the_last_epoch(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    bar = Progress(None, 5, "mlp-l2")
    for epoch in range(5):
        bar.update(f"val_loss {epoch}")
    bar.close()
    out = capsys.readouterr()
    assert out.out == "" and out.err.splitlines() == ["mlp-l2: epoch 5/5 val_loss 4"]
    bar = Progress(None, 3, "ridge")
    bar.PLAIN_EVERY = 0.0
    for epoch in range(3):
        bar.update("x")
    assert len(capsys.readouterr().err.splitlines()) == 3


def test_no_lines_when_progress_is_off(capsys):
    bar = Progress(False, 3, "quiet")
    for _ in range(3):
        bar.update("x")
    assert capsys.readouterr().err == ""
