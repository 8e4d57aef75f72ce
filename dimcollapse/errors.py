"""Errors a person can act on, reported as one line instead of a traceback.

A job that stops because a video is broken, a checkpoint unreadable, the disk full or a
feature matrix constant should tell its user the file, the problem and what to do, in
one line that the Snakemake summary shows; the traceback only helps whoever debugs the
package, so it goes to the job's log (:func:`dimcollapse.logs.setup_logging`). Every such
error of the package derives from :class:`KnownError`; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class KnownError(Exception):
    """An error whose message names the file and the problem (and, with :attr:`advice`,
    what to do)."""

    #: What to do, for messages that do not say so themselves (appended by :func:`one_line`).
    advice: str = ""


def one_line(err: BaseException) -> str:
    """The message of ``err`` as one line, with its class's advice when it has one."""
    text = "; ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
    advice = getattr(err, "advice", "")
    return f"{text}; {advice}" if advice and advice not in text else text
