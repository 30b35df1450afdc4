"""The progress display: plain lines when not a terminal, an in-place bar on one."""

import io

from aol.engine.progress import Progress

ROW = {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.75, "test_accuracy": 0.7,
       "test_certified_accuracy": {"36/255": 0.6, "1": 0.1}, "lr": 0.01,
       "epoch_seconds": 1.5}  # fmt: skip


def test_plain_lines_without_a_terminal():
    stream = io.StringIO()
    progress = Progress(epochs=3, steps_per_epoch=10, stream=stream)
    assert not progress.wants_update()  # no bar redraws into a log file
    progress.epoch_end(ROW)
    assert stream.getvalue() == (
        "epoch 2/3 loss 0.5000 acc 0.750 test_acc 0.700 cert 36/255 0.600 lr 1.00e-02 1.50s\n"
    )


def test_the_line_shows_the_first_configured_radius_or_none():
    stream = io.StringIO()
    progress = Progress(epochs=3, steps_per_epoch=10, stream=stream)
    progress.epoch_end({**ROW, "test_certified_accuracy": {"0.5": 0.25, "36/255": 0.6}})
    progress.epoch_end({**ROW, "test_accuracy": None, "test_certified_accuracy": None})
    first, unevaluated = stream.getvalue().splitlines()
    assert " cert 0.5 0.250 lr" in first and "36/255" not in first
    assert unevaluated == "epoch 2/3 loss 0.5000 acc 0.750 lr 1.00e-02 1.50s"


def test_bar_is_redrawn_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress(epochs=3, steps_per_epoch=10, stream=stream)
    assert progress.wants_update()
    progress.step(1, 5, 0.25, 0.5)
    assert stream.getvalue().startswith("\repoch 1/3 [############")
    assert "loss 0.2500 acc 0.500" in stream.getvalue()
    assert not progress.wants_update()  # throttled
