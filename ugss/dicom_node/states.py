"""The node's states: of a series, a job and an outbox item (``db.py`` tells the transitions).

They are stored as their strings in SQLite; rows are converted to these members where
``db.py`` reads them (``StudySeries``, ``Job``), and every state written in ``db.py``'s SQL is
one of them (``tests/dicom_node/test_states.py`` reads the SQL text to check).
"""

from __future__ import annotations

from enum import StrEnum


class SeriesState(StrEnum):
    RECEIVING = "receiving"
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    QUARANTINED = "quarantined"  # the decoder crashed or hit a limit: kept, never rerun
    PASSED = "passed"  # study selection chose another series
    IGNORED = "ignored"  # instances acknowledged but not kept (localizer, reformat, dose report)
    PURGED = "purged"  # retention deleted its instances and results; the row stays


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class OutboxState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


# a new instance does not reopen a series in these
OPEN_STATES = (SeriesState.RECEIVING, SeriesState.QUEUED, SeriesState.QUARANTINED)
# a series with a job waiting or running
ACTIVE_STATES = (SeriesState.QUEUED, SeriesState.PROCESSING)
# selection did not segment it
PASSED_STATES = (SeriesState.PASSED, SeriesState.IGNORED)
# the series a study report lists as not assessed
NOT_ASSESSED_STATES = (*PASSED_STATES, SeriesState.FAILED, SeriesState.QUARANTINED)
# finished one way or another: retention may purge it
FINISHED_STATES = (
    SeriesState.DONE, SeriesState.FAILED, SeriesState.QUARANTINED, *PASSED_STATES
)  # fmt: skip
