"""A progress bar for training on stderr: redrawn in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time

BAR_WIDTH = 24
REDRAW_SECONDS = 0.25


class Progress:
    def __init__(self, epochs: int, steps_per_epoch: int, stream=None) -> None:
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_draw = 0.0

    def wants_update(self) -> bool:
        """True when a redraw is due (the caller then reads the loss, which syncs the device)."""
        return self.interactive and time.monotonic() - self._last_draw >= REDRAW_SECONDS

    def step(self, epoch: int, step: int, loss: float, accuracy: float) -> None:
        self._last_draw = time.monotonic()
        done = step / self.steps_per_epoch
        bar = "#" * int(done * BAR_WIDTH)
        self.stream.write(
            f"\repoch {epoch}/{self.epochs} [{bar:<{BAR_WIDTH}}] {step}/{self.steps_per_epoch} "
            f"loss {loss:.4f} acc {accuracy:.3f}"
        )
        self.stream.flush()

    def epoch_end(self, metrics: dict) -> None:
        """One line per epoch; of the monitoring certificate (keyed by radius, in the
        configured order) it shows the first radius, e.g. ``cert 36/255 0.600``."""
        certified = metrics.get("test_certified_accuracy") or {}
        test = metrics.get("test_accuracy")
        test_text = "" if test is None else f" test_acc {test:.3f}"
        radius, value = next(iter(certified.items()), (None, None))
        certified_text = "" if value is None else f" cert {radius} {value:.3f}"
        line = (
            f"epoch {metrics['epoch']}/{self.epochs} loss {metrics['train_loss']:.4f} "
            f"acc {metrics['train_accuracy']:.3f}{test_text}"
            f"{certified_text} lr {metrics['lr']:.2e} {metrics['epoch_seconds']:.2f}s"
        )
        prefix = "\r\033[K" if self.interactive else ""
        self.stream.write(prefix + line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
