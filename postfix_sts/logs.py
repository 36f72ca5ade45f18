"""Logging to stderr, in a form journald understands.

Under systemd (``JOURNAL_STREAM`` is set) each line starts with the syslog
priority as ``<N>`` (sd-daemon(3)), so journald records warnings and errors
with their level and adds its own timestamps.  Elsewhere lines carry a UTC
timestamp and the level name.
"""

import logging
import os
import sys
import time

_PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """Prefix each line with its sd-daemon priority, e.g. ``<4>`` for a warning."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITIES.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


def setup(level: str) -> None:
    """Send the package's log to stderr at ``level`` (debug, info, warning, error)."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
