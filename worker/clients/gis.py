"""AIESEC GIS (EXPA) GraphQL: the query texts, page walks and token refresh (s.4).

All query texts live here. Lists are read a page at a time (`page`, with a `Cursor` a
task can checkpoint), oldest change first (`updated_at` ascending) with a moving lower
bound: each next request asks for records changed at or after the last one seen, so
records that change during the walk (and move to the end) never shift an unread record
onto a page already read; the records at the boundary are not returned twice.

A 401 refreshes the token once when GIS_REFRESH_TOKEN (+ client id/secret) is
configured; the new token is kept in Redis for the whole fleet and never logged.
Otherwise a 401 raises AuthError naming GIS_ACCESS_TOKEN.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
import requests

from worker import store
from worker.http import (
    Api,
    AuthError,
    ClientError,
    RateLimited,
    TransientError,
    retry_after_seconds,
)
from worker.ratelimit import Budget, per_second
from worker.settings import Settings

log = logging.getLogger(__name__)

OFFICE = "id name parent { id name }"
PERSON_FIELDS = f"""
  id email first_name last_name full_name dob interviewed profile_photo status cv_url
  nps_score permissions {{ can_apply }} home_lc {{ {OFFICE} }} created_at updated_at
"""
APPLICATION_FIELDS = f"""
  id status current_status created_at updated_at date_matched date_approved
  date_realized experience_start_date experience_end_date
  person {{ {PERSON_FIELDS} }}
  opportunity {{ id programme {{ id short_name short_name_display }} home_lc {{ id }} }}
"""

PEOPLE_QUERY = f"""
query People($page: Int, $per_page: Int, $sort: String, $filters: PeopleFilter) {{
  allPeople(page: $page, per_page: $per_page, sort: $sort, filters: $filters) {{
    data {{ {PERSON_FIELDS} }}
    paging {{ total_items total_pages current_page }}
  }}
}}"""

APPLICATIONS_QUERY = f"""
query Applications($page: Int, $per_page: Int, $sort: String,
                   $filters: ApplicationFilter) {{
  allOpportunityApplication(page: $page, per_page: $per_page, sort: $sort,
                            filters: $filters) {{
    data {{ {APPLICATION_FIELDS} }}
    paging {{ total_items total_pages current_page }}
  }}
}}"""

PERSON_QUERY = f"query Person($id: ID!) {{ person(id: $id) {{ {PERSON_FIELDS} }} }}"
APPLICATION_QUERY = (f"query Application($id: ID!) {{ getApplication(id: $id) "
                     f"{{ {APPLICATION_FIELDS} }} }}")

# Records read by id in one call: GIS's schema has no `ids` filter, so a page is one query
# of aliased single-record fields (`p0: person(id: $i0)`, `a0: getApplication(id: $i0)`,
# ...), at most this many: people and applications alike.
BY_ID_PAGE = 100
PEOPLE_BY_ID_PAGE = APPLICATIONS_BY_ID_PAGE = BY_ID_PAGE


@dataclass(frozen=True)
class ById:
    """A single-record root field read for a page of ids: the operation's name, the
    field, the prefix of its aliases, and the fragment of the record's fields."""

    operation: str
    field: str
    alias: str
    type_name: str
    fields: str


PEOPLE_BY_ID = ById("PeopleById", "person", "p", "Person", PERSON_FIELDS)
APPLICATIONS_BY_ID = ById("ApplicationsById", "getApplication", "a", "OpportunityApplication",
                          APPLICATION_FIELDS)


def by_id_query(kind: ById, count: int) -> str:
    """The query text reading `count` records of `kind` by id (variables i0, i1, ...)."""
    params = ", ".join(f"$i{n}: ID!" for n in range(count))
    fragment = kind.alias.upper()
    fields = " ".join(f"{kind.alias}{n}: {kind.field}(id: $i{n}) {{ ...{fragment} }}"
                      for n in range(count))
    return (f"query {kind.operation}({params}) {{ {fields} }}\n"
            f"fragment {fragment} on {kind.type_name} {{ {kind.fields} }}")


@dataclass(frozen=True)
class Listing:
    """A GIS list the fleet walks: its query, the root field, the oldest-first sort."""

    text: str
    root: str
    sort: str


PEOPLE = Listing(PEOPLE_QUERY, "allPeople", "+updated_at")
APPLICATIONS = Listing(APPLICATIONS_QUERY, "allOpportunityApplication", "ASC_updated_at")


@dataclass(frozen=True)
class Cursor:
    """Where a walk of a list stands: records changed at or after `lower` (None: all),
    page `page` of those, without the versions in `skip` (already read at that boundary:
    "id|updated_at", so a record that changed again since is read again)."""

    lower: str | None = None
    page: int = 1
    skip: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"lower": self.lower, "page": self.page, "skip": self.skip}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Cursor:
        return cls(lower=raw.get("lower"), page=int(raw.get("page") or 1),
                   skip=list(raw.get("skip") or []))

def _version(row: dict[str, Any]) -> str:
    """A record as read at one time: its id and `updated_at`."""
    return f"{row.get('id')}|{row.get('updated_at')}"


CREDENTIALS = ("GIS_ACCESS_TOKEN",)
REFRESH_CREDENTIALS = ("GIS_REFRESH_TOKEN", "GIS_CLIENT_ID", "GIS_CLIENT_SECRET")
REFRESH_TIMEOUT = (5, 30)  # connect, read (seconds)
# Longer than a refresh request can take, so the lock is still ours when it ends.
REFRESH_LOCK_S = 60
REFRESH_WAIT_S = 30  # for another worker's refresh to end


class GisQueryError(ClientError):
    """GraphQL answered with `errors`: the query or its variables are wrong."""


class GisClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._configured = settings.secret("GIS_ACCESS_TOKEN")
        budget = Budget("gis", per_second(settings.gis_max_rps),
                        margin=settings.rate_limit_margin)
        self.api = Api("gis", settings.gis_api_url, CREDENTIALS, budget)
        self.page_size = settings.gis_page_size
        # The fleet's refreshed token belongs to the configured one: a new
        # GIS_ACCESS_TOKEN starts afresh instead of using a stale refresh.
        fingerprint = hashlib.sha256(self._configured.encode()).hexdigest()[:12]
        self._token_key = store.key("gis", "token", fingerprint)

    @property
    def calls(self) -> int:
        return self.api.calls

    # -- transport -------------------------------------------------------------------
    def _token(self) -> str:
        return store.client().get(self._token_key) or self._configured

    def query(self, text: str, variables: dict[str, Any]) -> dict[str, Any]:
        token = self._token()
        try:
            answer = self._post(text, variables, token)
        except AuthError:
            if not self._can_refresh():
                raise
            answer = self._post(text, variables, self._refresh(token))
        if answer.get("errors"):
            messages = "; ".join(str(e.get("message", e)) for e in answer["errors"][:3])
            raise GisQueryError("gis", f"GraphQL errors: {messages}", 200, answer["errors"])
        data = answer.get("data")
        if not isinstance(data, dict):
            raise TransientError("gis", "GraphQL answer without data", 200)
        return data

    def _post(self, text: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
        answer = self.api.json("POST", "/graphql", json={"query": text, "variables": variables},
                               headers={"Authorization": token})
        if not isinstance(answer, dict):
            raise TransientError("gis", "GraphQL answer is not an object", 200)
        return answer

    def _can_refresh(self) -> bool:
        s = self.settings
        return bool(s.gis_refresh_token and s.gis_client_id and s.gis_client_secret)

    def _refresh(self, failed_token: str) -> str:
        """Trade the refresh token for a new access token, once for the whole fleet."""
        try:
            with store.lock("gis-token-refresh", REFRESH_LOCK_S, wait=REFRESH_WAIT_S):
                return self._refresh_held(store.client(), failed_token)
        except store.LockHeld:
            # Another worker's refresh is still running: try again shortly (not a bad token).
            raise TransientError("gis", "token refresh: the refresh lock is still held") \
                from None

    def _refresh_held(self, r: redis.Redis, failed_token: str) -> str:
        current = self._token()
        if current != failed_token:  # another worker refreshed meanwhile
            return current
        refresh = r.get(self._token_key + ":refresh") or self.settings.secret(
            "GIS_REFRESH_TOKEN")
        form = {"grant_type": "refresh_token", "refresh_token": refresh,
                "client_id": self.settings.secret("GIS_CLIENT_ID"),
                "client_secret": self.settings.secret("GIS_CLIENT_SECRET")}
        try:
            self.api.calls += 1
            response = requests.post(self.settings.gis_auth_url, data=form, timeout=REFRESH_TIMEOUT)
        except requests.RequestException as exc:
            raise TransientError("gis", "token refresh failed to connect") from exc
        if response.status_code >= 500:
            raise TransientError("gis", f"token refresh: {response.status_code}")
        if response.status_code == 429:  # the auth service is busy: the token is fine
            raise RateLimited("gis", retry_after_seconds(response.headers))
        body = _json(response)
        token = body.get("access_token") if response.ok else None
        if not token:
            raise AuthError("gis", f"token refresh refused ({response.status_code}): "
                            "check " + " and ".join(CREDENTIALS + REFRESH_CREDENTIALS),
                            response.status_code)
        ttl = int(body.get("expires_in") or 7200)
        r.set(self._token_key, token, ex=max(60, ttl - 60))
        if body.get("refresh_token"):
            r.set(self._token_key + ":refresh", body["refresh_token"])
        log.info("gis token refreshed (expires_in=%ss)", ttl)
        return token

    # -- lists -----------------------------------------------------------------------
    def people(self, home_committee: int, since: str | None = None
               ) -> Iterator[dict[str, Any]]:
        """People of an LC changed at or after `since` (all when None), oldest first."""
        return self._walk(PEOPLE, {"home_committee": home_committee}, since)

    def applications(self, since: str | None = None, **filters: Any
                     ) -> Iterator[dict[str, Any]]:
        """Applications matching `filters` (person_home_lc=..., opportunity_home_lc=...,
        person_id=...) changed at or after `since`, oldest first."""
        return self._walk(APPLICATIONS, filters, since)

    def person(self, person_id: str) -> dict[str, Any] | None:
        return self.query(PERSON_QUERY, {"id": str(person_id)}).get("person")

    def people_by_id(self, person_ids: list[str]) -> list[dict[str, Any]]:
        """The people GIS knows among `person_ids` (at most PEOPLE_BY_ID_PAGE), in one
        call; unknown ids are left out."""
        return [p for p in self.by_id(PEOPLE_BY_ID, person_ids) if p]

    def by_id(self, kind: ById, ids: list[str]) -> list[dict[str, Any] | None]:
        """Records of `kind` read by id in one call (at most BY_ID_PAGE ids): one answer
        per id, in order, None where GIS has no such record (the alias is null)."""
        ids = [str(i) for i in ids[:BY_ID_PAGE]]
        if not ids:
            return []
        found = self.query(by_id_query(kind, len(ids)),
                           {f"i{n}": record_id for n, record_id in enumerate(ids)})
        return [found.get(f"{kind.alias}{n}") or None for n in range(len(ids))]

    def application(self, application_id: str) -> dict[str, Any] | None:
        return self.query(APPLICATION_QUERY, {"id": str(application_id)}).get("getApplication")

    def check(self, home_committee: int) -> None:
        """One cheap read (a page of one person): a wrong token raises AuthError now,
        before any work is planned."""
        self.query(PEOPLE.text, {"page": 1, "per_page": 1, "sort": PEOPLE.sort,
                                 "filters": {"home_committee": home_committee}})

    def page(self, listing: Listing, filters: dict[str, Any], cursor: Cursor
             ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """One page of a list at `cursor`; returns its new records and the cursor of the
        next page (None after the last). Pages are read oldest change first with a
        moving lower bound: the next page starts at the last `updated_at` read, so a
        record that changes meanwhile (and moves to the end) never shifts an unread one
        onto a page already read; `cursor.skip` keeps the records at the boundary from
        coming back twice."""
        window = dict(filters)
        if cursor.lower:
            window["last_interaction"] = {"from": cursor.lower}
        variables = {"page": cursor.page, "per_page": self.page_size, "sort": listing.sort,
                     "filters": window}
        found = self.query(listing.text, variables).get(listing.root) or {}
        rows = [row for row in found.get("data") or [] if row]
        skip = set(cursor.skip)
        fresh = [row for row in rows if _version(row) not in skip]
        if len(rows) < self.page_size:
            return fresh, None
        last = rows[-1].get("updated_at")
        at_last = [_version(r) for r in rows if r.get("updated_at") == last]
        if last and last != cursor.lower:  # move the lower bound: re-reads only the boundary
            return fresh, Cursor(lower=last, page=1, skip=at_last)
        # A full page of one timestamp: step through it by page.
        return fresh, Cursor(lower=cursor.lower, page=cursor.page + 1,
                             skip=sorted(skip | set(at_last)))

    def _walk(self, listing: Listing, filters: dict[str, Any], since: str | None
              ) -> Iterator[dict[str, Any]]:
        cursor: Cursor | None = Cursor(lower=since)
        while cursor is not None:
            rows, cursor = self.page(listing, filters, cursor)
            yield from rows


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
