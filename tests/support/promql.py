"""A small PromQL evaluator for the alert tests: the subset `ops/prometheus/alerts.yml`
uses, evaluated over real scrapes of the exporter the way Prometheus would at one
instant (no Prometheus binary here).

    selectors           name{label="v", label!="v", label=~"re"}
    range functions     rate, increase, delta over [d]: from two scrapes, `before` and
                        `now` (the window's two samples; a series absent from `before`
                        has no rate, as in Prometheus with a single sample)
    aggregations        sum, max, min, count, with `by (labels)`
    binary operators    * / + - and comparisons (== != > < >= <=) between scalars and
                        vectors, vector matching with on(labels) and group_left;
                        and, or, unless
    functions           time()

Each scrape carries the labels Prometheus adds to every series of its target (`job`,
`instance`), and the synthetic `up` (1 when the scrape answered 200, else 0).
An expression is "firing" when its value is a non-empty vector.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]
Value = float | Vector

TARGET = {"job": "syncfleet", "instance": "syncfleet-host:9808"}
TOKEN = re.compile(r"\s*(?:(?P<dur>\d+[smhd]\b)|(?P<num>\d+(?:\.\d+)?(?:e[+-]?\d+)?)"
                   r"|(?P<str>\"(?:[^\"\\]|\\.)*\")|(?P<op>==|!=|>=|<=|=~|!~|[-+*/(){}\[\],<>=])"
                   r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*))")
COMPARE = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
           ">=": operator.ge, "<=": operator.le}
ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
AGGREGATE = {"sum": sum, "max": max, "min": min, "count": len}


@dataclass
class Scrape:
    """What one scrape gave: each series (name, labels) -> value, and when."""

    at: float
    series: dict[tuple[str, Labels], float] = field(default_factory=dict)

    @classmethod
    def of(cls, at: float, status: int, text: str) -> Scrape:
        scrape = cls(at)
        scrape.series[("up", frozenset(TARGET.items()))] = 1.0 if status == 200 else 0.0
        if status == 200:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    labels = frozenset({**sample.labels, **TARGET}.items())
                    scrape.series[(sample.name, labels)] = sample.value
        return scrape

    def names(self) -> set[str]:
        return {name for name, _ in self.series}


def evaluate(expr: str, now: Scrape, before: Scrape | None = None) -> Value:
    return _Parser(expr, now, before).parse()


def firing(expr: str, now: Scrape, before: Scrape | None = None) -> Vector:
    value = evaluate(expr, now, before)
    assert isinstance(value, dict), f"{expr} is a scalar"
    return value


class _Parser:
    def __init__(self, text: str, now: Scrape, before: Scrape | None) -> None:
        self.tokens = [next(v for v in m.groupdict().values() if v is not None)
                       for m in TOKEN.finditer(text) if m.group().strip()]
        assert "".join(self.tokens) == re.sub(r"\s+", "", text), f"cannot read {text!r}"
        self.pos, self.now, self.before = 0, now, before

    def parse(self) -> Value:
        value = self.set_ops()
        assert self.pos == len(self.tokens), f"left over: {self.tokens[self.pos:]}"
        return value

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.pos]
        assert expected is None or token == expected, f"expected {expected}, got {token}"
        self.pos += 1
        return token

    def label_list(self) -> list[str]:
        self.take("(")
        names = []
        while self.peek() != ")":
            names.append(self.take())
            if self.peek() == ",":
                self.take()
        self.take(")")
        return names

    # -- precedence, lowest first -----------------------------------------------------
    def set_ops(self) -> Value:
        left = self.and_ops()
        while self.peek() in ("or",):
            self.take()
            left = _or(left, self.and_ops())
        return left

    def and_ops(self) -> Value:
        left = self.comparison()
        while self.peek() in ("and", "unless"):
            op = self.take()
            on = self.matching()[0]
            right = self.comparison()
            keys = {_key(labels, on) for labels in right}
            wanted = op == "and"
            left = {labels: v for labels, v in left.items()
                    if (_key(labels, on) in keys) == wanted}
        return left

    def comparison(self) -> Value:
        left = self.additive()
        while self.peek() in COMPARE:
            op = COMPARE[self.take()]
            on, _ = self.matching()
            left = _binary(left, self.additive(), op, on, filtering=True)
        return left

    def matching(self) -> tuple[list[str] | None, bool]:
        on, grouped = None, False
        if self.peek() == "on":
            self.take()
            on = self.label_list()
        if self.peek() == "group_left":
            self.take()
            grouped = True
            if self.peek() == "(":
                self.label_list()
        return on, grouped

    def additive(self) -> Value:
        left = self.multiplicative()
        while self.peek() in ("+", "-"):
            op = ARITH[self.take()]
            on, _ = self.matching()
            left = _binary(left, self.multiplicative(), op, on, filtering=False)
        return left

    def multiplicative(self) -> Value:
        left = self.atom()
        while self.peek() in ("*", "/"):
            op = ARITH[self.take()]
            on, _ = self.matching()
            left = _binary(left, self.atom(), op, on, filtering=False)
        return left

    def atom(self) -> Value:
        token = self.take()
        if token == "(":
            value = self.set_ops()
            self.take(")")
            return value
        if re.fullmatch(r"\d.*", token):
            return float(token)
        if token == "time":
            self.take("(")
            self.take(")")
            return self.now.at
        if token in ("rate", "increase", "delta"):
            return self.range_function(token)
        if token in AGGREGATE:
            return self.aggregation(token)
        return self.selector(token, self.now)

    def selector(self, name: str, scrape: Scrape) -> Vector:
        matchers = []
        if self.peek() == "{":
            self.take("{")
            while self.peek() != "}":
                label, op, value = self.take(), self.take(), self.take()
                matchers.append((label, op, value[1:-1]))
                if self.peek() == ",":
                    self.take()
            self.take("}")
        out = {}
        for (series, labels), value in scrape.series.items():
            have = dict(labels)
            if series == name and all(_match(have.get(k, ""), op, v) for k, op, v in matchers):
                out[labels] = value
        return out

    def range_function(self, function: str) -> Vector:
        assert self.before is not None, f"{function}() needs a scrape before this one"
        self.take("(")
        pos = self.pos
        name = self.take()
        now = self.selector(name, self.now)
        self.pos = pos
        self.take()
        before = self.selector(name, self.before)
        self.take("[")
        self.take()
        self.take("]")
        self.take(")")
        seconds = self.now.at - self.before.at
        out = {}
        for labels, value in now.items():
            if labels not in before:
                continue  # one sample: no rate
            change = value - before[labels]
            if function != "delta" and change < 0:
                change = value  # a counter reset
            out[labels] = change / seconds if function == "rate" else change
        return out

    def aggregation(self, function: str) -> Vector:
        by = self.label_list() if self.peek() == "by" and self.take() else []
        self.take("(")
        inner = self.set_ops()
        self.take(")")
        if self.peek() == "by":
            self.take()
            by = self.label_list()
        assert isinstance(inner, dict)
        groups: dict[Labels, list[float]] = {}
        for labels, value in inner.items():
            groups.setdefault(_key(labels, by), []).append(value)
        return {key: float(AGGREGATE[function](values)) for key, values in groups.items()}


def _match(have: str, op: str, want: str) -> bool:
    return {"=": have == want, "!=": have != want,
            "=~": re.fullmatch(want, have) is not None,
            "!~": re.fullmatch(want, have) is None}[op]


def _key(labels: Labels, on: list[str] | None) -> Labels:
    return labels if on is None else frozenset((k, v) for k, v in labels if k in on)


def _binary(left: Value, right: Value, op, on: list[str] | None, filtering: bool) -> Value:
    if not isinstance(left, dict) and not isinstance(right, dict):
        return float(op(left, right))
    if not isinstance(right, dict):
        return {k: (v if filtering else op(v, right)) for k, v in left.items()
                if not filtering or op(v, right)}
    if not isinstance(left, dict):
        return {k: (v if filtering else op(left, v)) for k, v in right.items()
                if not filtering or op(left, v)}
    by_key = {_key(labels, on): v for labels, v in right.items()}
    out = {}
    for labels, value in left.items():
        other = by_key.get(_key(labels, on))
        if other is None:
            continue
        if filtering:
            if op(value, other):
                out[labels] = value
        else:
            out[labels] = op(value, other)
    return out


def _or(left: Value, right: Value) -> Vector:
    assert isinstance(left, dict) and isinstance(right, dict)
    return {**{k: v for k, v in right.items() if k not in left}, **left}
