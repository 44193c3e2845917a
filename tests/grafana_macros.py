"""What Grafana does to a dashboard query before the database sees it, for the queries firewatch's
dashboards use: template variables, then the data source's macros. No Grafana server runs in the
tests, so tests/test_dashboards.py expands queries with this and runs them on real databases.

Each step follows Grafana's documentation and source (versions 10-13), cited where it is done:

1. Template variables (the frontend's template service): `$name`, `${name}`, `${name:format}` and
   `[[name]]`. Without a format the data source formats the value:
   - PostgreSQL (`SqlDatasource.interpolateVariable`, packages/grafana-sql): a multi-value or
     include-All variable becomes quoted literals joined by commas (`'a','b'`, `'` doubled); any
     other variable is inserted as it is, with `'` doubled.
   - InfluxDB (`InfluxDatasource.interpolateQueryExpr`): a number is inserted as it is; a
     multi-value variable is regex-escaped, several values as `(a|b)`; any other variable is
     regex-escaped only where the query uses it inside a `/regex/`.
   "All" on a variable without a custom all value means every option's value. Explicit formats
   implemented: `sqlstring`, `singlequote`, `doublequote`, `csv`, `pipe`; any other is an error.
2. Macros. PostgreSQL (pkg/tsdb/grafana-postgresql-datasource/macros.go and sqleng's
   Interpolate): `$__interval`, `$__interval_ms`, `$__unixEpochFrom()`, `$__unixEpochTo()`, then
   every `$__name(args)`: `$__unixEpochFilter(col)` is `col >= FROM AND col <= TO` (epoch seconds),
   `$__unixEpochGroup(col, '1d')` is `floor((col)/86400)*86400`, and its `Alias` form adds
   `AS "time"`. Only the macros firewatch uses are implemented: any other `$__name(...)` is an error,
   as it would be for a misspelt macro in Grafana ("unknown macro").
   InfluxQL (pkg/tsdb/influxdb/influxql, raw queries): `$timeFilter` is
   `time >= FROMms and time <= TOms`; `$__interval_ms`, `$__interval` and `$interval` the interval.
3. Whatever still looks like a variable or macro afterwards (`$word`, `${`, `[[`) is an error:
   Grafana would send it to the database as it is.

`$__interval` is the range divided by 1,000 points, rounded as Grafana rounds intervals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Value = str | list[str]


class GrafanaExpansionError(ValueError):
    """A query uses a variable, format or macro that Grafana would not expand."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range, epoch seconds."""

    start: float
    end: float

    @property
    def interval_s(self) -> float:
        return round_interval((self.end - self.start) / 1000.0)

    @property
    def interval_text(self) -> str:
        return format_interval(self.interval_s)


@dataclass(frozen=True)
class Variable:
    """A template variable with its options and what is selected (None: "All")."""

    name: str
    multi: bool
    include_all: bool
    options: tuple[str, ...]
    selected: tuple[str, ...] | None = None

    def value(self) -> Value:
        if self.selected is None:
            if not self.include_all:
                raise GrafanaExpansionError(f"${self.name} has no All option: select a value")
            return list(self.options)
        if self.multi:
            return list(self.selected)
        if len(self.selected) != 1:
            raise GrafanaExpansionError(f"${self.name} takes one value, got {self.selected}")
        return self.selected[0]

    def choose(self, *values: str) -> Variable:
        return Variable(self.name, self.multi, self.include_all, self.options, tuple(values) or None)


Formatter = Callable[[Value, Variable, str], str]

# The template service's variable syntax (public/app/features/variables/utils.ts, variableRegex).
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
_LEFTOVER = re.compile(r"\$\w|\$\{|\[\[")
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")  # macros.go: sExpr


def js_escape_regex(value: str) -> str:
    """@grafana/data's escapeRegex."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


def _js_parse_float_is_nan(value: str) -> bool:
    """Whether JavaScript's parseFloat(value) is NaN (it reads the longest numeric prefix)."""
    return (
        re.match(r"\s*[+-]?(Infinity|\d+\.?\d*(e[+-]?\d+)?|\.\d+(e[+-]?\d+)?)", value, re.IGNORECASE) is None
    )


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def format_sql(value: Value, variable: Variable, _query: str) -> str:
    """SqlDatasource.interpolateVariable."""
    if isinstance(value, list):
        return ",".join(_sql_literal(v) for v in value)
    if variable.multi or variable.include_all:
        return _sql_literal(value)
    return value.replace("'", "''")


def format_influxql(value: Value, variable: Variable, query: str) -> str:
    """InfluxDatasource.interpolateQueryExpr."""
    if isinstance(value, str) and not _js_parse_float_is_nan(value):
        return value
    escaped = (
        js_escape_regex(value)
        if isinstance(value, str)
        else "(" + "|".join(map(js_escape_regex, value)) + ")"
    )
    if variable.multi:
        return escaped
    in_regex = re.compile(r"/(?:\^)?(.*)(\$" + re.escape(variable.name) + r")(.*)(?:\$)?/")
    if not in_regex.search(query):
        return value if isinstance(value, str) else ",".join(value)
    for chunk in re.findall(r"(?<=/).+?(?=/)", query):
        try:
            re.compile(chunk)
        except re.error:
            continue
        return escaped
    return value if isinstance(value, str) else ",".join(value)


def _explicit(fmt: str, value: Value) -> str:
    values = value if isinstance(value, list) else [value]
    if fmt == "sqlstring":
        return ",".join(_sql_literal(v) for v in values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    raise GrafanaExpansionError(f"variable format {fmt!r} is not implemented by this expander")


def interpolate_variables(query: str, variables: Mapping[str, Variable], formatter: Formatter) -> str:
    """Step 1. Names starting with `__` and names that are not variables are left for step 2."""

    def replace(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(5)
        variable = variables.get(name)
        if variable is None:
            if fmt is not None:
                raise GrafanaExpansionError(f"{m.group(0)}: no variable {name!r} on this dashboard")
            return m.group(0)
        value = variable.value()
        return _explicit(fmt, value) if fmt is not None else formatter(value, variable, query)

    return _VARIABLE.sub(replace, query)


def _interval_arg(arg: str, time_range: TimeRange) -> float:
    text = arg.strip().strip("'")
    if text == "$__interval":
        return time_range.interval_s
    return parse_interval(text)


def _go_float(x: float) -> str:
    # Go's %v of a float64 (macros.go formats the interval's seconds with it): 86400, 0.5, 300.
    return str(int(x)) if x == int(x) and abs(x) < 1e6 else repr(x)


def expand_postgres_macros(query: str, time_range: TimeRange) -> str:
    """Step 2, PostgreSQL: sqleng's global replacements, then the macro engine."""
    start, end = math.floor(time_range.start), math.floor(time_range.end)
    ms = round(time_range.interval_s * 1000)
    query = query.replace("$__interval_ms", str(ms)).replace("$__interval", time_range.interval_text)
    query = query.replace("$__unixEpochFrom()", str(start)).replace("$__unixEpochTo()", str(end))

    def macro(m: re.Match[str]) -> str:
        name, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {start} AND {args[0]} <= {end}"
        if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
            if len(args) < 2:
                raise GrafanaExpansionError(f"macro {name} needs a time column and an interval")
            seconds = _go_float(_interval_arg(args[1], time_range))
            group = f"floor(({args[0]})/{seconds})*{seconds}"
            return group + ' AS "time"' if name.endswith("Alias") else group
        raise GrafanaExpansionError(f"unknown macro {name!r} (not one this expander implements)")

    return _check_leftovers(_MACRO.sub(macro, query))


def expand_influxql_macros(query: str, time_range: TimeRange) -> str:
    """Step 2, InfluxQL (raw query mode)."""
    start_ms, end_ms = round(time_range.start * 1000), round(time_range.end * 1000)
    text, ms = time_range.interval_text, round(time_range.interval_s * 1000)
    query = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    query = query.replace("$interval", text).replace("$__interval_ms", str(ms)).replace("$__interval", text)
    return _check_leftovers(query)


def _check_leftovers(query: str) -> str:
    m = _LEFTOVER.search(query)
    if m is not None:
        context = query[max(0, m.start() - 30) : m.end() + 30]
        raise GrafanaExpansionError(f"unexpanded variable or macro near {context!r}")
    return query


def expand_sql(query: str, variables: Mapping[str, Variable], time_range: TimeRange) -> str:
    return expand_postgres_macros(interpolate_variables(query, variables, format_sql), time_range)


def expand_influxql(query: str, variables: Mapping[str, Variable], time_range: TimeRange) -> str:
    return expand_influxql_macros(interpolate_variables(query, variables, format_influxql), time_range)


# --- intervals (Grafana's gtime: ParseInterval, FormatInterval, roundInterval) ---------------------
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# (upper bound, rounded value) in seconds, after Grafana's roundInterval.
_ROUNDING: Sequence[tuple[float, float]] = (
    (0.015, 0.01), (0.035, 0.02), (0.075, 0.05), (0.15, 0.1), (0.35, 0.2), (0.75, 0.5), (1.5, 1.0),
    (3.5, 2.0), (7.5, 5.0), (12.5, 10.0), (17.5, 15.0), (25.0, 20.0), (45.0, 30.0), (90.0, 60.0),
    (210.0, 120.0), (450.0, 300.0), (750.0, 600.0), (1050.0, 900.0), (1500.0, 1200.0), (2700.0, 1800.0),
    (5400.0, 3600.0), (9000.0, 7200.0), (27000.0, 10800.0), (43200.0, 21600.0), (86400.0, 43200.0),
    (604800.0, 86400.0), (2592000.0, 604800.0),
)  # fmt: skip


def round_interval(seconds: float) -> float:
    for bound, value in _ROUNDING:
        if seconds < bound:
            return value
    return 2592000.0


def parse_interval(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", text)
    if m is None:
        raise GrafanaExpansionError(f"not an interval: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_interval(seconds: float) -> str:
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"
