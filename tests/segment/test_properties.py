"""Property-based tests: Segment profiles and traits, valid and malformed (issue 12, item 3).

Valid profiles from hypothesis strategies, with one or several malformations of
tests/support/malformed.py (the catalogue shared with tests/gis/test_properties.py).
Invariants, over many examples of `mapping.customer` and over a fixed sample end to end
through the shipped worker and the sandbox:

- nothing raises; a profile without a usable source id (no `user_id` row, or one that
  is blank, not text or a number, over 1000 characters) is skipped with a reason and
  never sent;
- every customer Voucherify gets validates against its schema (the sandbox's own
  validator of the bulk body) and passes its checks (no customer fails in the async
  action);
- every valid profile, and every valid field of a partly bad one, arrives with its value;
- every dropped field is named exactly once in the warnings.

Segment malformations and what the fleet does with each:

{catalogue}
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.voucherify import bulk_errors
from sandbox.voucherify_project import customer_problem
from tests.support import malformed as m
from tests.support.segment import no_nulls
from worker.segment_migration import mapping

__doc__ = __doc__.format(catalogue=m.describe((m.PROFILE,)))

EXAMPLES = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
VARIANTS = m.of_kind(m.PROFILE)


def assert_customer_valid(customer: dict[str, Any]) -> None:
    assert bulk_errors([customer]) == []
    assert customer_problem(customer) is None  # would fail in the async action
    assert no_nulls(customer)


def expected(valid: dict[str, Any], effects: list[tuple[str, m.Effect]]
             ) -> tuple[dict[str, Any] | None, set[str], list[str]]:
    """(the customer, the fields named in warnings, skip reasons) the catalogue says."""
    customer = m.expected_customer(valid)
    warned: set[str] = set()
    reasons = []
    for _, effect in effects:
        if effect.outcome in (m.REJECTED, m.SKIPPED):
            reasons.append(effect.reason)
        for name in effect.fields:
            customer.pop(name, None)
        for name, value in effect.values.items():
            if name == "metadata+":
                customer["metadata"] = {**customer.get("metadata", {}), **value}
            else:
                customer[name] = value
        warned |= {f for kind, f in effect.warn if kind == m.PROFILE}
    return (None if reasons else customer), warned, reasons


@EXAMPLES
@given(valid=m.profiles(), malformations=st.lists(st.sampled_from(VARIANTS), max_size=4))
def test_customer_keeps_every_valid_field_and_names_each_dropped_one_once(
        valid, malformations):
    profile, effects = m.combine(copy.deepcopy(valid), malformations)
    customer, warned, reasons = expected(valid, effects)
    out = mapping.customer(profile["segment_id"], profile["traits"], profile["external_ids"])
    if reasons:
        assert out.customer is None
        assert any(r in out.skipped for r in reasons), (out.skipped, reasons)
        return
    assert out.skipped is None
    assert out.customer == customer
    assert {w["field"] for w in out.warnings} == warned
    assert len(out.warnings) == len(warned)  # each dropped field named once
    assert all(w["segment_id"] == profile["segment_id"] and
               w["source_id"] == customer["source_id"] for w in out.warnings)
    assert_customer_valid(out.customer)


# --- end to end: a fixed sample through the shipped worker and the sandbox ----------------------
def sample_profile(n: int, nested: bool) -> dict[str, Any]:
    traits: dict[str, Any] = {
        "first_name": "Łukasz", "last_name": "Nowak", "email": f"u{n}@example.org",
        "phone": f"+351 91{n % 10_000_000:07d}", "birthdate": "1990-05-17", "plan": "pro",
        "created_at": m.iso(m.ago(days=30))}
    if nested:
        traits["address"] = dict(m.ADDRESS)
    else:
        traits.update(city="Kraków", country="PL", postal_code="30-001")
    return {"segment_id": f"use_e2e{n}", "traits": traits,
            "external_ids": [{"id": f"anon-{n}", "type": "anonymous_id"},
                             {"id": f"u{n}@example.org", "type": "email"},
                             {"id": f"u-{n}", "type": "user_id"}]}


def e2e_sample() -> list[tuple[dict[str, Any], dict[str, Any], list[tuple[str, m.Effect]]]]:
    """(valid, profile, effects): every malformation alone, then random pairs of those
    that leave the user_id alone (fixed seed; every source_id stays unique)."""
    import random

    rng = random.Random(12)
    variants = m.of_kind(m.PROFILE, e2e=True)
    pairable = [v for v in variants if not v[1].touches & {"user_id", "external_ids"}]
    combos = [[v] for v in variants] + [rng.sample(pairable, 2) for _ in range(8)]
    out = []
    for i, chosen in enumerate(combos):
        valid = sample_profile(9_000_000 + i, nested=i % 2 == 0)
        profile, effects = m.combine(copy.deepcopy(valid), chosen)
        out.append((valid, profile, effects))
    return out


def test_malformed_profiles_end_to_end_nothing_fails_everything_valid_arrives(
        seg_env, fleet):
    from tests.support.logs import assert_every_line_parses
    from tests.support.segment import run_migration

    admin = seg_env.admin
    sample = e2e_sample()
    twice = sample_profile(9_100_000, nested=True)  # the same segment id on two pages
    odd = {**sample_profile(9_100_001, nested=False), "segment_id": "use_odd+id% x"}
    admin.add_profiles([p for _, p, _ in sample] + [twice, odd, twice])

    summary = run_migration(fleet, timeout=90)

    customers = admin.voucherify_customers()["customers"]
    skipped = {s["segment_id"]: s["reason"] for s in summary["skipped"]}
    ours = {p["segment_id"] for _, p, _ in sample}
    warnings = [(w["segment_id"], w["field"]) for w in summary["warnings"]
                if w["segment_id"] in ours]
    expected_warnings = set()
    for valid, profile, effects in sample:
        customer, warned, reasons = expected(valid, effects)
        sid = profile["segment_id"]
        if reasons:
            assert any(r in skipped[sid] for r in reasons), (sid, skipped.get(sid))
            continue
        assert sid not in skipped
        sent = customers[customer["source_id"]]
        assert {k: sent.get(k) for k in customer} == customer, [n for n, _ in effects]
        assert set(sent) - {"id", "created_at", "updated_at", "upserts"} == set(customer)
        assert sent["upserts"] == 1
        expected_warnings |= {(sid, f) for f in warned}
    assert set(warnings) == expected_warnings
    assert len(warnings) == len(set(warnings))  # each dropped field named once
    assert {sid for sid in skipped if sid in ours} == {
        p["segment_id"] for v, p, e in sample if expected(v, e)[2]}
    # Listed twice: migrated twice (an upsert by source_id: one customer).
    assert customers["u-9100000"]["upserts"] == 2
    assert customers["u-9100001"]["email"] == "u9100001@example.org"  # the odd segment id
    assert summary["failed"] == [] and summary["status"] == "finished"

    stats = admin.stats()
    assert stats["rejected"]["voucherify"]["schema"] == 0  # everything sent validates
    assert stats["rejected"]["voucherify"]["size"] == 0
    records = assert_every_line_parses(fleet.log(), "logfmt")
    assert [r for r in records if r["level"] in ("ERROR", "CRITICAL")] == []
    assert [r for r in records if " retry: " in r["msg"]] == []
