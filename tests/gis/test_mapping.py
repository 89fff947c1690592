"""GIS person -> customer.io attributes, and the reasons a person is refused."""

from __future__ import annotations

import pytest

from tests.support.clock import ago, iso
from worker.gis_sync import mapping
from worker.gis_sync.ladder import Malformed

# Relative to the run's start: a created_at later than today is dropped as implausible.
CREATED = ago(days=340)


def person(**fields):
    record = {"id": "3000007", "email": "ann@example.org", "first_name": "Ann",
              "last_name": "Lee", "full_name": "Ann Lee", "dob": "1999-05-04",
              "interviewed": True, "profile_photo": "https://x/p.jpg", "status": "open",
              "cv_url": None, "nps_score": 9, "permissions": {"can_apply": False},
              "home_lc": {"id": "1340", "name": "Sandbox LC",
                          "parent": {"id": "1", "name": "Sandboxia"}},
              "created_at": iso(CREATED), "updated_at": iso(ago(days=300))}
    record.update(fields)
    return record


def test_attributes_follow_the_contract_and_omit_missing_values():
    mapped = mapping.map_person(person())
    assert mapped.attributes == {
        "email": "ann@example.org", "first_name": "Ann", "last_name": "Lee",
        "full_name": "Ann Lee", "birthday": "1999-05-04", "interviewed": True,
        "photo": "https://x/p.jpg", "status": "open", "nps_score": 9, "can_apply": False,
        "home_lc": "Sandbox LC", "home_lc_country": "Sandboxia"}
    assert mapped.warnings == [] and mapped.id == "3000007"


def test_first_identify_adds_created_at_in_unix_seconds():
    assert mapping.map_person(person()).first == {"created_at": int(CREATED.timestamp())}
    assert mapping.map_person(person(created_at=None)).first == {}


def test_missing_values_are_omitted_never_null():
    attrs = mapping.map_person(person(home_lc=None, permissions=None, cv_url=None)).attributes
    assert None not in attrs.values()
    assert "home_lc" not in attrs and "can_apply" not in attrs and "cv" not in attrs


@pytest.mark.parametrize(("fields", "field", "reason"), [
    ({"email": "not-an-email"}, "email", "not an email address"),
    ({"dob": "1999-02-30"}, "dob", "not a date"),
    ({"dob": "31/12/1998"}, "dob", "not a date"),
    ({"dob": "0000-00-00"}, "dob", "not a date"),
    ({"dob": "1850-01-01"}, "dob", "implausible date"),
    ({"created_at": "yesterday"}, "created_at", "not a date-time"),
    ({"first_name": "é" * 600}, "first_name", "longer than 1000 bytes"),
    ({"first_name": {"given": "Ann"}}, "first_name", "not text"),
    ({"profile_photo": "photo.jpg"}, "profile_photo", "not an http(s) URL"),
    ({"nps_score": "nine"}, "nps_score", "not a whole number"),
    ({"interviewed": "maybe"}, "interviewed", "not true or false"),
    ({"home_lc": "Sandbox LC"}, "home_lc", "not an object"),
])
def test_a_bad_field_is_dropped_with_a_warning_and_the_rest_is_kept(fields, field, reason):
    mapped = mapping.map_person(person(**fields))
    assert [(name, why.split(" (")[0].split(":")[0]) for name, why in mapped.warnings] == [
        (field, reason)]
    good = mapping.map_person(person()).attributes
    dropped = {mapping_name for mapping_name, (path, _) in {**mapping.FIELDS,
                                                          **mapping.FIRST_IDENTIFY}.items()
               if ".".join(path).startswith(field)}
    assert {k: v for k, v in good.items() if k not in dropped} == \
        {k: v for k, v in mapped.attributes.items() if k not in dropped}


def test_a_person_without_email_is_identified_by_id():
    mapped = mapping.map_person(person(email=None))
    assert "email" not in mapped.attributes and mapped.warnings == []
    assert mapped.attributes["first_name"] == "Ann"


@pytest.mark.parametrize("bad_id", [None, "", "  ", {"id": 1}, ["1"], True, "9" * 200])
def test_only_a_person_without_a_usable_id_is_unusable(bad_id):
    with pytest.raises(Malformed, match="id"):
        mapping.map_person(person(id=bad_id))


def test_numbers_as_strings_and_strings_as_numbers_are_read_as_meant():
    mapped = mapping.map_person(person(nps_score="7", first_name=42, interviewed="true"))
    assert (mapped.attributes["nps_score"], mapped.attributes["first_name"],
            mapped.attributes["interviewed"]) == (7, "42", True)
