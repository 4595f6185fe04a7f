"""Calling the mammogan binary: `run("train", ...)` with its output, one-line errors raised."""

import os
import shutil
import subprocess


class MammoganError(RuntimeError):
    """The binary exited non-zero; the message is its one-line error."""


def binary():
    """The binary: $MAMMOGAN_BIN, else `mammogan` on PATH."""
    path = os.environ.get("MAMMOGAN_BIN") or shutil.which("mammogan")
    if not path:
        raise MammoganError("mammogan binary not found: set MAMMOGAN_BIN or put mammogan on PATH")
    return path


def run(*args, quiet=True, check=True, timeout=None):
    """Runs `mammogan ARGS...` and returns its standard output as text.

    `quiet` passes --quiet (no progress bars in a notebook). A failure raises MammoganError with the
    binary's own one-line error (its last stderr line)."""
    cmd = [binary()] + (["--quiet"] if quiet else []) + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        raise MammoganError(lines[-1] if lines else f"{' '.join(cmd[:2])}: exit status {p.returncode}")
    return p.stdout
