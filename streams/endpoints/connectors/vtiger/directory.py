"""The accounts that vtiger records point at: who the customer is, and where it is.

A deal names its customer in ``related_to`` and a call or meeting in ``parent_id`` or
``contact_id``; either may be a contact rather than an organisation. SalesPulse counts
customers as accounts, so a contact is resolved to its account, and the engagement of an
account then matches the account its ``deal.won`` names. A deal's region comes from its
account's billing address. Record ids read ``<prefix>x<number>``, and the prefixes differ
between installations, so they come from ``describe``.

Lookups are batched per page of records (one query per 100 ids) and not cached across
pages, so a contact moved to another account is seen at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from salespulse.streams.endpoints.connectors.vtiger.client import PAGE_SIZE, VtigerClient

#: A record id as vtiger writes it; anything else never reaches a query.
RECORD_ID = re.compile(r"^[0-9]+x[0-9]+$")
ACCOUNT_PLACE_FIELDS = ("bill_city", "bill_state", "bill_country")


@dataclass(frozen=True)
class Prefixes:
    """The record-id prefixes of the modules a reference may point at."""

    accounts: str
    contacts: str

    def module(self, ref: object) -> str | None:
        """``Accounts``, ``Contacts`` or None for a reference to anything else (or to nothing)."""
        if not isinstance(ref, str) or not RECORD_ID.match(ref):
            return None
        prefix = ref.split("x", 1)[0]
        return {self.accounts: "Accounts", self.contacts: "Contacts"}.get(prefix)


@dataclass
class Directory:
    """Contacts' accounts and accounts' places for one page of records."""

    client: VtigerClient
    prefixes: Prefixes
    account_of_contact: dict[str, str] = field(default_factory=dict)
    places: dict[str, dict[str, str]] = field(default_factory=dict)

    def load(self, refs: Iterable[object]) -> None:
        """Look up every account and contact in ``refs`` (ids of other modules are ignored)."""
        ids = {r for r in refs if isinstance(r, str)}
        contacts = sorted(
            {r for r in ids if self.prefixes.module(r) == "Contacts"} - set(self.account_of_contact)
        )
        for row in self._rows("Contacts", ("account_id",), contacts):
            account = row.get("account_id")
            if self.prefixes.module(account) == "Accounts":
                self.account_of_contact[str(row["id"])] = str(account)
        accounts = {r for r in ids if self.prefixes.module(r) == "Accounts"}
        accounts |= set(self.account_of_contact.values())
        for row in self._rows("Accounts", ACCOUNT_PLACE_FIELDS, sorted(accounts - set(self.places))):
            self.places[str(row["id"])] = {f: str(row.get(f) or "") for f in ACCOUNT_PLACE_FIELDS}

    def _rows(self, module: str, fields: tuple[str, ...], ids: list[str]) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for start in range(0, len(ids), PAGE_SIZE):
            chunk = ", ".join(f"'{i}'" for i in ids[start : start + PAGE_SIZE])
            rows += self.client.query(f"SELECT id, {', '.join(fields)} FROM {module} WHERE id IN ({chunk});")
        return rows

    def customer(self, *refs: object) -> str | None:
        """The first reference that is an account, or a contact with an account, as the account id."""
        for ref in refs:
            kind = self.prefixes.module(ref)
            if kind == "Accounts":
                return str(ref)
            if kind == "Contacts" and (account := self.account_of_contact.get(str(ref))) is not None:
                return account
        return None

    def place(self, account: str | None) -> dict[str, str]:
        """The account's billing city, state and country (empty strings when unknown)."""
        return self.places.get(account or "", dict.fromkeys(ACCOUNT_PLACE_FIELDS, ""))
