"""Progress for steps that take more than a moment: a spinner, the step's name and the time spent.

Written to stderr, so stdout stays the command's result; off when stderr is not a terminal
(Rich then prints nothing for a transient display).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

_stderr = Console(stderr=True)


@contextmanager
def step(description: str, *, quiet: bool = False) -> Iterator[None]:
    """Show ``description`` with a spinner and elapsed time while the block runs."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=_stderr,
                  disable=quiet, transient=False) as bar:
        task = bar.add_task(description, total=None)
        yield
        bar.update(task, total=1, completed=1)
