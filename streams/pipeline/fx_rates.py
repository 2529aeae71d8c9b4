"""The rates file (``SALESPULSE_FX_RATES``): read, checked, and read again when it changes.

A CSV with the header ``date,currency,rate``: a UTC day (``YYYY-MM-DD``), a currency code
and the reporting currency's units per unit of that currency, a positive decimal read
exactly (``0.90``, ``0.0000238``). ``IRT``, ``IRHR`` and ``IRHT`` rates are per Toman, per
1,000 and per 10,000 rials, and are kept per rial. A line for the reporting currency itself
is refused: it converts at exactly 1.

Rates are applied when windows are read, never stored in state, so a changed file only
swaps the :class:`~salespulse.agents.money.Rates` the engine reads with. The worker checks the
file's size and modification time every few seconds; a file that no longer reads keeps the
rates in force and is reported (log and ``salespulse_fx_rates_file_valid``), and one that
is invalid at start stops the worker with the reason.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from salespulse.agents.money import ALIASES, EXACT, Rates

log = logging.getLogger("salespulse.fx")

HEADER = ("date", "currency", "rate")
CURRENCY = re.compile(r"[A-Z]{3}|IRHR|IRHT")
#: Seconds between two looks at the file: a change is in force within this, well inside a minute.
POLL_SECONDS = 5.0


class RatesError(ValueError):
    """The rates file cannot be used; the message names the file, the line and why."""


def parse_rates(text: str, reporting: str, where: str = "SALESPULSE_FX_RATES") -> Rates:
    """The rates of a CSV text, for the ``reporting`` currency."""
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or tuple(h.strip().lower() for h in header) != HEADER:
        raise RatesError(f"{where}: line 1 must be the header date,currency,rate, not {header!r}")
    table: dict[str, dict[int, Decimal]] = {}
    for number, row in enumerate(rows, 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(HEADER):
            raise RatesError(f"{where}: line {number} has {len(row)} fields, not 3 (date,currency,rate)")
        day_text, currency, rate_text = (cell.strip() for cell in row)
        try:
            day = date.fromisoformat(day_text).toordinal() - date(1970, 1, 1).toordinal()
        except ValueError:
            raise RatesError(f"{where}: line {number}: {day_text!r} is not a date YYYY-MM-DD") from None
        if len(day_text) != 10:
            raise RatesError(f"{where}: line {number}: {day_text!r} is not a date YYYY-MM-DD")
        if not CURRENCY.fullmatch(currency):
            raise RatesError(f"{where}: line {number}: {currency!r} is not a currency code such as USD")
        try:
            rate = Decimal(rate_text)
        except InvalidOperation:
            rate = Decimal(-1)
        if not rate.is_finite() or rate <= 0:
            raise RatesError(f"{where}: line {number}: rate {rate_text!r} is not a positive number")
        stored, factor = ALIASES.get(currency, (currency, 1))
        if stored == reporting:
            raise RatesError(
                f"{where}: line {number}: {currency} is the reporting currency, which converts at"
                " exactly 1: remove the line"
            )
        by_day = table.setdefault(stored, {})
        if day in by_day:
            raise RatesError(f"{where}: line {number}: a second {stored} rate for {day_text}")
        by_day[day] = EXACT.divide(rate, factor)
    return Rates(reporting, table)


@dataclass
class RatesFile:
    """The file as last read: what is in force, and whether the last read succeeded."""

    path: Path | None
    reporting: str
    rates: Rates
    valid: bool = True
    _stamp: tuple[int, int, int] | None = None

    @classmethod
    def open(cls, path: Path | None, reporting: str) -> RatesFile:
        """Read the file (:class:`RatesError` if it cannot be used)."""
        watched = cls(path, reporting, Rates(reporting))
        if path is not None:
            watched._stamp = watched._stat()
            watched.rates = parse_rates(watched._read(), reporting, str(path))
        return watched

    def _stat(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read(self) -> str:
        assert self.path is not None
        try:
            return self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise RatesError(f"{self.path}: cannot be read: {exc}") from None

    def poll(self) -> bool:
        """Read the file again if it changed; True when new rates are in force."""
        if self.path is None:
            return False
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.rates = parse_rates(self._read(), self.reporting, str(self.path))
        except RatesError as exc:
            self.valid = False
            log.error("rates file not reloaded, the previous rates stay in force: %s", exc)
            return False
        self.valid = True
        log.info("rates file %s reloaded", self.path)
        return True
