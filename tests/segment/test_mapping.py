"""Segment traits -> Voucherify customer: the pure mapping and its validation."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.support.clock import RUN_START
from worker.clients.segment import profile_path
from worker.segment_migration.mapping import customer, parse_birthdate

TODAY = date(2026, 11, 23)
USER = [{"id": "anon-1", "type": "anonymous_id"}, {"id": "u-17", "type": "user_id"}]


def mapped(traits, external_ids=USER, **kwargs):
    return customer("use_1", traits, external_ids, today=TODAY, **kwargs)


def test_full_profile_maps_every_field():
    out = mapped({
        "first_name": "Zoë", "last_name": "Müller", "email": "zoe@example.com",
        "phone": "+41 44 123", "description": "VIP", "birthdate": "1990-05-01T00:00:00.000Z",
        "address": {"street": "1 Main St.", "city": "Zürich", "postal_code": "8001",
                    "country": "CH"},
        "metadata": {"plan": "pro", "beta": True}, "created_at": "2024-01-01T00:00:00Z",
    })
    assert out.skipped is None and out.warnings == []
    assert out.customer == {
        "source_id": "u-17", "name": "Zoë Müller", "email": "zoe@example.com",
        "phone": "+41 44 123", "description": "VIP", "birthdate": "1990-05-01",
        "address": {"line_1": "1 Main St.", "city": "Zürich", "postal_code": "8001",
                    "country": "CH"},
        "metadata": {"plan": "pro", "beta": True, "created_at": "2024-01-01T00:00:00Z"},
        "system_metadata": {"source": "segment"},
    }


def test_name_trait_wins_and_camel_case_parts_work():
    assert mapped({"name": "Ann Smith", "firstName": "X"}).customer["name"] == "Ann Smith"
    assert mapped({"firstName": "Ann", "lastName": "Lee"}).customer["name"] == "Ann Lee"
    assert mapped({"firstName": "Ann"}).customer["name"] == "Ann"
    assert "name" not in mapped({}).customer


def test_top_level_address_and_postal_code_spellings():
    out = mapped({"city": "Austin", "state": "TX", "postalCode": "73301", "street": "5 Elm",
                  "country": "US"})
    assert out.customer["address"] == {"line_1": "5 Elm", "city": "Austin", "state": "TX",
                                       "postal_code": "73301", "country": "US"}
    assert "city" not in out.customer.get("metadata", {})


def test_partial_nested_address_is_completed_from_top_level():
    out = mapped({"address": {"city": "Köln"}, "country": "DE"})
    assert out.customer["address"] == {"city": "Köln", "country": "DE"}


def test_no_identifier_is_skipped_never_sent_with_null_source_id():
    out = mapped({"email": "a@b.co"}, [{"id": "anon", "type": "anonymous_id"}])
    assert out.customer is None
    assert out.skipped == "no user_id external id"


def test_source_id_type_is_configurable():
    ids = [{"id": "a@b.co", "type": "email"}, {"id": "u-1", "type": "user_id"}]
    assert mapped({}, ids, source_id_type="email").customer["source_id"] == "a@b.co"


def test_overlong_source_id_skips_the_profile():
    out = mapped({}, [{"id": "x" * 1001, "type": "user_id"}])
    assert out.customer is None and "longer than 1000" in out.skipped


IN_A_MONTH = (RUN_START + timedelta(days=30)).date().isoformat()  # a birthdate in the future


@pytest.mark.parametrize("bad", ["1990-13-45", "31/12/1990", "1990-02-30", "yesterday",
                                 "19900101x", IN_A_MONTH, "1800-01-01"])
def test_invalid_birthdate_is_dropped_with_a_warning(bad):
    out = mapped({"birthdate": bad, "email": "a@b.co"})
    assert "birthdate" not in out.customer
    assert out.customer["email"] == "a@b.co"  # the customer is still sent
    assert [w["field"] for w in out.warnings] == ["birthdate"]
    assert out.warnings[0]["source_id"] == "u-17" and out.warnings[0]["segment_id"] == "use_1"


@pytest.mark.parametrize(("raw", "expected"), [
    ("1990-05-01", "1990-05-01"), ("1990-05-01T00:00:00.000Z", "1990-05-01"),
    ("1990-05-01T23:00:00+02:00", "1990-05-01"), ("19900501", "1990-05-01")])
def test_valid_birthdates_are_written_yyyy_mm_dd(raw, expected):
    assert parse_birthdate(raw, TODAY) == (expected, None)


@pytest.mark.parametrize("bad", ["not-an-email", "ann@", "@example.com", "two@@example.com",
                                 "spaces in@x.com", "a@b", "a@.com"])
def test_invalid_email_is_dropped_with_a_warning(bad):
    out = mapped({"email": bad, "name": "Ann"})
    assert "email" not in out.customer and out.customer["name"] == "Ann"
    assert out.warnings[0]["field"] == "email"


def test_plus_and_uppercase_emails_are_valid():
    assert mapped({"email": "ann+news@Example.ORG"}).customer["email"] == "ann+news@Example.ORG"


def test_overlong_values_are_dropped_with_a_warning():
    out = mapped({"description": "Long note. " * 100, "metadata": {"note": "y" * 1001},
                  "name": "Ann"})
    assert "description" not in out.customer
    assert out.customer["name"] == "Ann"
    assert {w["field"] for w in out.warnings} == {"description", "metadata.note"}
    assert "metadata" not in out.customer  # nothing left in it


def test_no_nulls_are_sent():
    out = mapped({"name": None, "email": None, "phone": "", "custom": None,
                  "metadata": {"a": None, "b": [1, None]}, "address": {"city": None}})
    assert out.customer == {"source_id": "u-17", "metadata": {"b": [1]},
                            "system_metadata": {"source": "segment"}}

    def walk(value):
        assert value is not None
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
    walk(out.customer)


def test_custom_traits_go_to_metadata_unless_disabled():
    traits = {"custom_01": 42, "custom_02": ["a", "b"], "metadata": {"plan": "pro"}}
    assert mapped(traits).customer["metadata"] == {"custom_01": 42, "custom_02": ["a", "b"],
                                                   "plan": "pro"}
    assert mapped(traits, extra_traits_to_metadata=False).customer["metadata"] == {"plan": "pro"}


def test_wrong_types_are_dropped_with_warnings():
    out = mapped({"email": ["a@b.co"], "phone": 4144123, "address": 7, "metadata": "x"})
    assert out.customer["phone"] == "4144123"
    assert {w["field"] for w in out.warnings} == {"email", "address", "metadata"}


def test_profile_path_encodes_plus():
    assert profile_path("use_a+b") == "segment_id:use_a%2Bb"
