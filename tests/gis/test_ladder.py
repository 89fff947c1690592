"""The status ladder, event naming and deterministic event ids (pure functions)."""

from __future__ import annotations

import json

import pytest
from ulid import ULID

from tests.support.clock import ago, iso
from worker.gis_sync import ladder
from worker.gis_sync.ladder import Malformed, event_id, events, load_ladder, to_unix

LADDER = load_ladder()
# Relative to the run's start: `events` refuses a date later than now (ladder._time).
T = {"created_at": iso(ago(days=70)), "date_matched": iso(ago(days=69)),
     "date_approved": iso(ago(days=68)), "date_realized": iso(ago(days=67)),
     "experience_end_date": iso(ago(days=25)), "updated_at": iso(ago(days=10))}


def app(status: str, programme: str = "GCDP", display: str = "GV", **fields: str | None):
    record = {"id": "8000017", "status": status, **T,
              "opportunity": {"id": "900003", "programme": {
                  "id": "1", "short_name": programme, "short_name_display": display}}}
    record.update(fields)
    return record


def names(outcome) -> list[str]:
    return [e.name for e in outcome.events]


def test_forward_move_emits_every_step_passed_in_order():
    outcome = events(1, app("approved"), LADDER)
    assert outcome.kind == "forward" and outcome.step == 3
    assert names(outcome) == ["GCDPaccepted", "GCDPapproved"]
    assert [e.timestamp for e in outcome.events] == [to_unix(T["date_matched"]),
                                                    to_unix(T["date_approved"])]


def test_new_application_to_approved_emits_applied_accepted_approved():
    assert names(events(0, app("approved"), LADDER)) == [
        "GCDPapplied", "GCDPaccepted", "GCDPapproved"]


def test_completed_uses_experience_end_date_else_updated_at():
    done = events(4, app("finished"), LADDER).events
    assert [(e.name, e.timestamp) for e in done] == [
        ("GCDPcompleted", to_unix(T["experience_end_date"]))]
    fallback = events(4, app("completed", experience_end_date=None), LADDER).events
    assert fallback[0].timestamp == to_unix(T["updated_at"])


@pytest.mark.parametrize(("status", "name"), [("withdrawn", "GCDPwithdrawn"),
                                              ("rejected", "GCDPrejected"),
                                              ("declined", "GCDPrejected")])
def test_negative_status_emits_its_one_event_at_updated_at(status, name):
    outcome = events(3, app(status), LADDER)
    assert [(e.name, e.timestamp) for e in outcome.events] == [(name, to_unix(T["updated_at"]))]
    assert outcome.step < 0
    assert events(outcome.step, app(status), LADDER).events == []  # no repeat


def test_backward_and_unmapped_emit_nothing_and_are_named():
    back = events(3, app("accepted"), LADDER)
    assert (back.kind, back.events, back.step) == ("backward", [], 2)
    broken = events(3, app("break_approved"), LADDER)
    assert (broken.kind, broken.events, broken.step) == ("unmapped", [], 3)
    same = events(2, app("matched"), LADDER)
    assert (same.kind, same.events) == ("unchanged", [])


def test_history_without_previous_step():
    assert names(events(None, app("realized"), LADDER)) == [
        "GCDPapplied", "GCDPaccepted", "GCDPapproved", "GCDPrealized"]
    # Withdrawn after approval: the dated steps, then the withdrawal; a planned
    # experience_end_date never counts as "completed".
    withdrawn = app("withdrawn", date_realized=None)
    assert names(events(None, withdrawn, LADDER)) == [
        "GCDPapplied", "GCDPaccepted", "GCDPapproved", "GCDPwithdrawn"]
    # A status outside the ladder now (an approval that broke) emits nothing, even with
    # its dated history there: no congratulations for a broken approval.
    off = events(None, app("approval_broken", date_realized=None), LADDER)
    assert (off.kind, off.events, off.step) == ("unmapped", [], None)


def test_since_drops_older_transitions_and_counts_them():
    outcome = events(None, app("approved"), LADDER, since=to_unix(T["date_approved"]))
    assert names(outcome) == ["GCDPapproved"] and outcome.skipped == 2


def test_event_name_uses_display_name_when_configured():
    display = load_ladder(name_field="short_name_display")
    assert names(events(0, app("applied"), display)) == ["GVapplied"]
    assert names(events(0, app("applied", programme="GTa", display="GTa"), LADDER)) == [
        "GTAapplied"]


def test_an_unknown_status_is_unmapped_not_a_failure():
    for previous in (None, 1):
        outcome = events(previous, app("on_hold_legacy"), LADDER)
        assert (outcome.kind, outcome.events, outcome.step) == ("unmapped", [], previous)


def test_unusable_applications_raise_with_reason():
    with pytest.raises(Malformed, match="no known programme"):
        events(1, app("applied", programme="XPX"), LADDER)
    assert ladder.validate(app(""), LADDER) == "no status"
    assert ladder.validate(app("applied", id=None), LADDER) == "no id"
    assert ladder.validate(app("applied", opportunity="GV"), LADDER).startswith(
        "no known programme")


def test_a_bad_date_falls_back_with_a_warning_and_no_date_at_all_is_unusable():
    outcome = events(1, app("accepted", date_matched="yesterday"), LADDER)
    assert [(e.name, e.timestamp) for e in outcome.events] == [
        ("GCDPaccepted", to_unix(T["updated_at"]))]
    assert outcome.warnings == [("date_matched", "not a date-time")]
    undated = app("accepted", date_matched=None, updated_at="0000-00-00", created_at="?")
    with pytest.raises(Malformed, match="no valid date"):
        events(1, undated, LADDER)
    # Dates outside any plausible range are not used either.
    far = events(1, app("accepted", date_matched="0001-01-01T00:00:00Z"), LADDER)
    assert far.events[0].timestamp == to_unix(T["updated_at"])
    assert far.warnings == [("date_matched", "implausible date-time")]


def test_status_table_override():
    custom = load_ladder(json.dumps({"on_hold_legacy": None,
                                     "approved": [3, "confirmed", "date_approved"]}))
    assert names(events(2, app("approved"), custom)) == ["GCDPconfirmed"]
    assert events(2, app("on_hold_legacy"), custom).kind == "unmapped"


def test_event_id_is_deterministic_ulid_with_transition_time():
    first = event_id("8000017", "GCDPapplied", 1767225600)
    assert first == event_id("8000017", "GCDPapplied", 1767225600)
    parsed = ULID.from_str(first)
    assert parsed.milliseconds == 1767225600 * 1000
    assert first != event_id("8000017", "GCDPapplied", 1767225601)
    assert first != event_id("8000018", "GCDPapplied", 1767225600)
    assert first != event_id("8000017", "GCDPaccepted", 1767225600)


def test_event_payload_holds_application_opportunity_programme():
    event = events(0, app("applied"), LADDER).events[0].as_dict()
    assert event["data"] == {"application_id": "8000017", "opportunity_id": "900003",
                             "programme": "GCDP"}
    assert isinstance(event["timestamp"], int)


def test_to_unix_accepts_dates_offsets_and_rejects_garbage():
    assert to_unix("2026-01-01") == to_unix("2026-01-01T00:00:00Z") == 1767225600
    assert to_unix("2026-01-01T01:00:00+01:00") == 1767225600
    assert to_unix("not a date") is None and to_unix(None) is None
