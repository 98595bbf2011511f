"""The job-state vocabulary is stated once (``app/states.py``), and what users see —
the request schema's answer, the web page's filter, the README — follows it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from marshmallow import ValidationError

from app import states
from app.schemas.notification import NotificationSchema
from app.schemas.task import MonitorBodySchema

README = Path(__file__).resolve().parents[2] / "README.md"


def _backticked(paragraph: str) -> set[str]:
    return set(re.findall(r"`([A-Z_]+)`", paragraph))


def _readme_paragraph(start: str, end: str) -> str:
    text = README.read_text(encoding="utf-8")
    i = text.index(start)
    return text[i:text.index(end, i)]


def test_readme_lists_exactly_the_reportable_states():
    listed = _backticked(_readme_paragraph("Reportable states:", "(the default"))
    assert listed == set(states.REPORTABLE_STATES)


def test_readme_lists_exactly_the_final_states():
    listed = _backticked(_readme_paragraph("- Final states:", ". `PENDING`"))
    assert listed == set(states.FINAL_STATES)


def test_schema_accepts_every_reportable_state_and_names_them_when_refusing():
    schema = NotificationSchema()
    assert schema.load({"on": list(states.REPORTABLE_STATES)})["on"] == list(states.REPORTABLE_STATES)
    with pytest.raises(ValidationError) as exc:
        schema.load({"on": ["SUBMITTING"]})       # ours, but never a thing to report
    message = exc.value.messages["on"][0][0]
    assert message == "Must be one of: " + ", ".join(states.REPORTABLE_STATES) + "."


def test_monitor_accepts_slurm_states_only():
    for state in states.BASE_STATES:
        assert MonitorBodySchema().load({"task": {"uuid": "123e4567-e89b-12d3-a456-426614174000",
                                                  "username": "someone"},
                                         "slurm_job_id": 1, "slurm_job_state": state})
    with pytest.raises(ValidationError) as exc:
        MonitorBodySchema().load({"task": {"uuid": "123e4567-e89b-12d3-a456-426614174000",
                                           "username": "someone"},
                                  "slurm_job_id": 1, "slurm_job_state": states.LOST})
    assert "slurm_job_state" in exc.value.messages


def test_sets_are_consistent():
    assert set(states.ARRAY_SEVERITY) == states.TERMINAL_STATES
    assert states.FINAL_STATES == states.TERMINAL_STATES | {states.SUBMIT_FAILED, states.LOST}
    assert not states.ACTIVE_STATES & states.FINAL_STATES
    assert states.OWN_STATES <= states.FINAL_STATES | states.ACTIVE_STATES
    assert states.DEFAULT_REPORTED_STATES <= set(states.REPORTABLE_STATES)
    assert not states.UNFINISHED_FLAGS & states.BASE_STATES
