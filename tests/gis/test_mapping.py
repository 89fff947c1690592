"""GIS person -> customer.io attributes, and the reasons a person is refused."""

from __future__ import annotations

import pytest

from worker.gis_sync import mapping
from worker.gis_sync.ladder import Malformed


def person(**fields):
    record = {"id": "3000007", "email": "ann@example.org", "first_name": "Ann",
              "last_name": "Lee", "full_name": "Ann Lee", "dob": "1999-05-04",
              "interviewed": True, "profile_photo": "https://x/p.jpg", "status": "open",
              "cv_url": None, "nps_score": 9, "permissions": {"can_apply": False},
              "home_lc": {"id": "1340", "name": "Sandbox LC",
                          "parent": {"id": "1", "name": "Sandboxia"}},
              "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-02-01T00:00:00Z"}
    record.update(fields)
    return record


def test_attributes_follow_the_contract_and_omit_missing_values():
    assert mapping.attributes(person()) == {
        "email": "ann@example.org", "first_name": "Ann", "last_name": "Lee",
        "full_name": "Ann Lee", "birthday": "1999-05-04", "interviewed": True,
        "photo": "https://x/p.jpg", "status": "open", "nps_score": 9, "can_apply": False,
        "home_lc": "Sandbox LC", "home_lc_country": "Sandboxia"}


def test_first_identify_adds_created_at_in_unix_seconds():
    assert mapping.first_identify(person()) == {"created_at": 1767225600}
    assert mapping.first_identify(person(created_at=None)) == {}


def test_no_null_and_values_cut_to_1000_bytes():
    attrs = mapping.attributes(person(first_name="é" * 900, home_lc=None, permissions=None))
    assert len(attrs["first_name"].encode()) <= 1000
    assert attrs["first_name"] == "é" * 500
    assert None not in attrs.values()
    assert "home_lc" not in attrs and "can_apply" not in attrs


@pytest.mark.parametrize(("fields", "reason"), [
    ({"email": None}, "no email"),
    ({"email": "  "}, "no email"),
    ({"email": "not-an-email"}, "invalid email"),
    ({"dob": "1999-02-30"}, "invalid dob"),
    ({"dob": "31/12/1998"}, "invalid dob"),
    ({"dob": "0000-00-00"}, "invalid dob"),
    ({"created_at": "yesterday"}, "invalid created_at"),
])
def test_malformed_people_have_a_reason(fields, reason):
    assert mapping.validate(person(**fields)).startswith(reason)
    with pytest.raises(Malformed):
        mapping.attributes(person(**fields))


def test_missing_dob_is_fine():
    assert "birthday" not in mapping.attributes(person(dob=None))
