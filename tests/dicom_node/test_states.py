"""Every state the node's SQL writes or reads is a member of ``ugss.dicom_node.states``."""

from __future__ import annotations

import re
from pathlib import Path

from ugss.dicom_node import db as db_module
from ugss.dicom_node.db import NodeDB
from ugss.dicom_node.states import JobState, OutboxState, SeriesState

JOB_KINDS = {"series", "study"}  # jobs.kind, the other quoted words of db.py's SQL


def test_every_quoted_word_in_the_sql_is_a_state_or_a_job_kind():
    text = Path(db_module.__file__).read_text(encoding="utf-8")
    words = set(re.findall(r"'([a-z_]+)'", text))
    states = {*SeriesState, *JobState, *OutboxState}
    assert words - states - JOB_KINDS == set()


def test_rows_come_back_as_members(tmp_path):
    db = NodeDB(tmp_path / "node.sqlite")
    try:
        db.record_instance(
            series_uid="1.2.3",
            study_uid="1.2",
            sop_uid="1.2.3.4",
            path="a.dcm",
            size=10,
            calling_ae="X",
        )
        (row,) = db.study_series("1.2")
        assert row.state is SeriesState.RECEIVING
        assert row.job_state == ""
        jobs = db.queue_study("1.2", chosen=["1.2.3"])
        assert [type(j.state) for j in jobs] == [JobState]
    finally:
        db.close()
