"""Which rides a run scores: months, run dates, backfills and windows, and the path templates.

Pure logic: no I/O. ``--run-date`` follows the course's ``get_paths``: a job that runs on
2021-04-01 scores the *previous* month (2021-03); with a window it scores the previous hour or
day instead.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from deploy_modes.core.errors import DeployError
from deploy_modes.core.tlc import parse_month

__all__ = [
    "DEFAULT_OUTPUT",
    "MAX_BACKFILL_MONTHS",
    "TEMPLATE_FIELDS",
    "WINDOWS",
    "Interval",
    "backfill",
    "check_template",
    "month_interval",
    "parse_run_date",
    "parse_window",
    "previous_interval",
    "render",
    "resolve_intervals",
]

DEFAULT_OUTPUT = (
    "output/taxi_type={taxi_type}/year={year:04d}/month={month:02d}/{model_version}.parquet"
)
TEMPLATE_FIELDS = ("taxi_type", "year", "month", "day", "hour", "model_version")
WINDOWS = {
    "1h": "hour",
    "hour": "hour",
    "1d": "day",
    "day": "day",
    "1mo": "month",
    "month": "month",
}
MAX_BACKFILL_MONTHS = 600  # fifty years: anything longer is a typo, not a backfill
_RUN_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class Interval:
    """A half-open span of pickup times ``[start, end)``: a month, a day or an hour."""

    start: datetime
    end: datetime
    kind: str = "month"

    @property
    def label(self) -> str:
        """Return a readable name: ``2021-03``, ``2021-03-05`` or ``2021-03-05T04``."""
        if self.kind == "month":
            return self.start.strftime("%Y-%m")
        if self.kind == "day":
            return self.start.strftime("%Y-%m-%d")
        return self.start.strftime("%Y-%m-%dT%H")

    @property
    def id_prefix(self) -> str:
        """Return the ride-id prefix: the course homework's ``2021/03`` (then ``/05``, ``T04``)."""
        prefix = f"{self.start.year:04d}/{self.start.month:02d}"
        if self.kind in ("day", "hour"):
            prefix += f"/{self.start.day:02d}"
        if self.kind == "hour":
            prefix += f"T{self.start.hour:02d}"
        return prefix

    def fields(self) -> dict[str, int]:
        """Return the template fields this interval fills in."""
        s = self.start
        return {"year": s.year, "month": s.month, "day": s.day, "hour": s.hour}


def month_interval(year: int, month: int) -> Interval:
    """Return the interval of one calendar month."""
    if not 1 <= month <= 12 or not 1 <= year <= 9998:
        raise DeployError(f"no such month: {year:04d}-{month:02d}")
    start = datetime(year, month, 1)
    end = datetime(year + 1, 1, 1) if month == 12 else datetime(year, month + 1, 1)
    return Interval(start, end, "month")


def parse_run_date(text: str) -> datetime:
    """Parse ``YYYY-MM-DD`` (optionally with ``THH:MM[:SS]``) or raise a clear error."""
    for fmt in _RUN_DATE_FORMATS:
        try:
            return datetime.strptime(str(text).strip(), fmt)
        except ValueError:
            continue
    raise DeployError(
        f"--run-date must look like YYYY-MM-DD or YYYY-MM-DDTHH:MM (e.g. 2021-04-01), got {text!r}"
    )


def parse_window(text: str | None) -> str:
    """Return ``month``, ``day`` or ``hour`` for a window option (default: month)."""
    if text is None or text == "":
        return "month"
    kind = WINDOWS.get(str(text).strip().lower())
    if kind is None:
        raise DeployError(f"--window must be 1h, 1d or 1mo, got {text!r}")
    return kind


def previous_interval(run_date: datetime, kind: str = "month") -> Interval:
    """Return the whole month, day or hour before ``run_date``, as the course's ``get_paths``."""
    if kind == "month":
        year, month = run_date.year, run_date.month - 1
        if month == 0:
            year, month = year - 1, 12
        return month_interval(year, month)
    if kind == "day":
        end = run_date.replace(hour=0, minute=0, second=0, microsecond=0)
        return Interval(end - timedelta(days=1), end, "day")
    if kind == "hour":
        end = run_date.replace(minute=0, second=0, microsecond=0)
        return Interval(end - timedelta(hours=1), end, "hour")
    raise DeployError(f"unknown window {kind!r}")


def backfill(first: str, last: str) -> list[Interval]:
    """Return every month from ``first`` to ``last`` (``YYYY-MM``, both included), in order."""
    y0, m0 = parse_month(first, "--from")
    y1, m1 = parse_month(last, "--to")
    count = (y1 * 12 + m1) - (y0 * 12 + m0) + 1
    if count < 1:
        raise DeployError(f"--from {first} is after --to {last}")
    if count > MAX_BACKFILL_MONTHS:
        raise DeployError(f"a backfill covers at most {MAX_BACKFILL_MONTHS} months, got {count}")
    index = y0 * 12 + (m0 - 1)
    return [month_interval((index + i) // 12, (index + i) % 12 + 1) for i in range(count)]


def resolve_intervals(
    month: str | None = None,
    run_date: str | None = None,
    first: str | None = None,
    last: str | None = None,
    window: str | None = None,
    now: datetime | None = None,
) -> list[Interval]:
    """Return the intervals a run covers; with no option, the month before ``now``."""
    kind = parse_window(window)
    chosen = [name for name, v in (("--month", month), ("--run-date", run_date)) if v]
    if first or last:
        chosen.append("--from/--to")
    if len(chosen) > 1:
        raise DeployError(f"give only one of {', '.join(chosen)}")
    if (first is None) != (last is None):
        raise DeployError("a backfill needs both --from YYYY-MM and --to YYYY-MM")
    if kind != "month" and not run_date:
        raise DeployError(f"--window {window} needs --run-date (it scores the window before it)")
    if month:
        return [month_interval(*parse_month(month, "--month"))]
    if first and last:
        return backfill(first, last)
    when = parse_run_date(run_date) if run_date else (now or datetime.now())
    return [previous_interval(when, kind)]


def render(template: str, interval: Interval, taxi_type: str, model_version: str = "") -> str:
    """Fill a location template for ``interval`` or raise a one-line error naming the problem."""
    values = {"taxi_type": taxi_type, "model_version": model_version, **interval.fields()}
    try:
        return template.format(**values)
    except KeyError as exc:
        raise DeployError(
            f"unknown field {{{exc.args[0]}}} in template {template!r}; "
            f"known: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        ) from None
    except (ValueError, IndexError, AttributeError, TypeError) as exc:
        raise DeployError(f"bad template {template!r}: {exc}") from None


def check_template(template: str, kind: str, what: str) -> None:
    """Refuse a file template that would give every window of a run the same location."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        raise DeployError(f"bad template {template!r}: {exc}") from None
    needed = {"month": ["year", "month"], "day": ["year", "month", "day"]}.get(
        kind, ["year", "month", "day", "hour"]
    )
    missing = [n for n in needed if n not in names]
    if missing:
        raise DeployError(
            f"{what} template {template!r} lacks {', '.join('{' + n + '}' for n in missing)}: "
            f"every {kind} would overwrite the same file"
        )
