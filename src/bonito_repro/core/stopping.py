"""SIGTERM, the signal Slurm sends a job some minutes before its time limit (sbatch --signal; the
profile asks for it, docs/reliability.md): the long jobs keep their progress and stop, and the
next attempt resumes from it. Training asks for a checkpoint at the end of its current step
(``SigtermFlag``); evaluation, whose finished templates are already on disk, stops at once
(``stop_on_sigterm``). Both exit with ``STOPPED_EXIT``, the shell's code for a SIGTERM, so
Snakemake counts an attempt and retries."""
from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator

STOPPED_EXIT = 128 + signal.SIGTERM


class Stopped(BaseException):
    """SIGTERM arrived: what was finished is kept for the next attempt. Not an ``Exception``, as
    KeyboardInterrupt is not, so that no handler of errors (a template's rendering wraps its
    errors with the row) takes it for one."""


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Stopped`` in the main thread (between two Python
    operations: a running forward pass finishes first)."""
    def stop(signum, frame):
        raise Stopped("SIGTERM (the time limit is near)")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def sigterm_deferred() -> Iterator[None]:
    """Within the block, a SIGTERM waits (blocked) until the block ends: for a step that records
    progress, which must happen whole or not at all."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


class SigtermFlag:
    """Remembers a SIGTERM instead of dying of it, while installed (a context manager)."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = None

    def _note(self, signum, frame) -> None:
        self.raised = True

    def __enter__(self) -> "SigtermFlag":
        self._previous = signal.signal(signal.SIGTERM, self._note)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._previous)
