"""Structured log lines: ``event key=value ...`` with UIDs, never patient names or IDs.

Patient identity may appear only at DEBUG level, and only where a person debugging a single
series needs it; every INFO-and-above line is safe to ship to a central log.

Values a peer chooses (AE titles, reasons quoting its data) are escaped: a control character or
a non-ASCII character becomes ``\\n``/``\\xNN``/``\\uNNNN``, so a newline or an ANSI escape
in a calling AE title can neither forge a log line nor repaint a terminal. ``OneLineFilter``
does the same for pynetdicom's records and drops their tracebacks (one line per connection).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("ugss.dicom_node")


def escape(text: str) -> str:
    """Printable ASCII only: everything else as a Python-style escape (``\\n``, ``\\x1b``)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode() for c in text)


class OneLineFilter(logging.Filter):
    """For third-party loggers: message escaped, traceback replaced by the exception's name."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({type(record.exc_info[1]).__name__})"
        record.msg, record.args = escape(message), ()
        record.exc_info, record.exc_text = None, None
        return True


# dicomweb-client runs each request through ``retrying`` even with its retries off, which logs
# every failed attempt as a WARNING whose message is a formatted traceback; the outbox logs the
# failure once, as one line, and retries it itself.
SILENCED = ("retrying",)


def quiet_third_party(prefix: str = "pynetdicom") -> None:
    """Put ``OneLineFilter`` on every logger under ``prefix`` (filters are not inherited), and
    keep the ``SILENCED`` loggers to errors."""
    for name in SILENCED:
        logging.getLogger(name).setLevel(logging.ERROR)
    names = [prefix] + [n for n in logging.root.manager.loggerDict if n.startswith(prefix + ".")]
    for name in names:
        target = logging.getLogger(name)
        if not any(isinstance(f, OneLineFilter) for f in target.filters):
            target.addFilter(OneLineFilter())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.3f}"
    text = escape(str(value))
    if not text or any(c in text for c in ' "='):
        text = '"' + text.replace('"', "'") + '"'
    return text


def event(name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one line ``name k=v ...``; fields keep their keyword order."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s", name, " ".join(f"{k}={_fmt(v)}" for k, v in fields.items()))
