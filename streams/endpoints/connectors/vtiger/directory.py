"""The records that vtiger records point at: who the customer is, and where it is.

In vtiger 8 a deal names its organisation in ``related_to`` (Accounts only) and its contact
in ``contact_id``; a call or meeting names an organisation or a deal in ``parent_id`` and a
contact in ``contact_id``. A B2C shop links every deal to a contact and none to an
organisation, and a contact may have no organisation (``account_id`` ``""``). The customer
is found by the chain every connector shares (:func:`..base.customer_of`): the
organisation, else the contact's organisation, else the contact, else (for a deal) the
deal itself; a call about a deal counts for that deal's customer. A deal's region comes
from its organisation's billing address. Record ids read ``<prefix>x<number>``, and the
prefixes differ between installations, so they come from ``describe``.

Lookups are batched per page of records (one query per 100 ids) and not cached across
pages, so a contact moved to another organisation is seen at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from salespulse.streams.endpoints.connectors.base import CONTACT, CONTACT_ORGANISATION, customer_of
from salespulse.streams.endpoints.connectors.vtiger.client import PAGE_SIZE, VtigerClient

#: A record id as vtiger writes it; anything else never reaches a query.
RECORD_ID = re.compile(r"^[0-9]+x[0-9]+$")
ACCOUNT_PLACE_FIELDS = ("bill_city", "bill_state", "bill_country")
DEAL_REFERENCES = ("related_to", "contact_id")


def rows_by_id(
    client: VtigerClient, module: str, ids: Iterable[str], columns: str = "*"
) -> list[dict[str, Any]]:
    """The rows of ``module`` with these ids, one query per 100; an id that is not
    ``<prefix>x<number>`` never reaches a query."""
    wanted = [i for i in ids if RECORD_ID.match(i)]
    rows: list[dict[str, Any]] = []
    for start in range(0, len(wanted), PAGE_SIZE):
        chunk = ", ".join(f"'{i}'" for i in wanted[start : start + PAGE_SIZE])
        rows += client.query(f"SELECT {columns} FROM {module} WHERE id IN ({chunk});")
    return rows


@dataclass(frozen=True)
class Prefixes:
    """The record-id prefixes of the modules a reference may point at."""

    accounts: str
    contacts: str
    potentials: str

    def module(self, ref: object) -> str | None:
        """``Accounts``, ``Contacts``, ``Potentials`` or None for anything else (or nothing)."""
        if not isinstance(ref, str) or not RECORD_ID.match(ref):
            return None
        prefix = ref.split("x", 1)[0]
        return {self.accounts: "Accounts", self.contacts: "Contacts", self.potentials: "Potentials"}.get(
            prefix
        )


@dataclass
class Directory:
    """Contacts' organisations, deals' references and organisations' places for one page.

    ``prefixes`` is asked only when there is a reference to look at, so a module whose
    records point at nothing (Leads) never needs the other modules' ``describe``.
    """

    client: VtigerClient
    prefixes: Callable[[], Prefixes]
    account_of_contact: dict[str, str] = field(default_factory=dict)
    deals: dict[str, tuple[str, str]] = field(default_factory=dict)
    places: dict[str, dict[str, str]] = field(default_factory=dict)

    def load(self, refs: Iterable[object]) -> None:
        """Look up every deal, contact and organisation in ``refs`` (other ids are ignored)."""
        ids = {r for r in refs if isinstance(r, str)}
        deals = sorted({r for r in ids if self._is(r, "Potentials")} - set(self.deals))
        for row in self._rows("Potentials", DEAL_REFERENCES, deals):
            self.deals[str(row["id"])] = (str(row.get("related_to") or ""), str(row.get("contact_id") or ""))
        ids |= {ref for refs_of_deal in self.deals.values() for ref in refs_of_deal}
        contacts = sorted({r for r in ids if self._is(r, "Contacts")} - set(self.account_of_contact))
        for row in self._rows("Contacts", ("account_id",), contacts):
            account = row.get("account_id")
            self.account_of_contact[str(row["id"])] = str(account) if self._is(account, "Accounts") else ""
        accounts = {r for r in ids if self._is(r, "Accounts")}
        accounts |= {a for a in self.account_of_contact.values() if a}
        for row in self._rows("Accounts", ACCOUNT_PLACE_FIELDS, sorted(accounts - set(self.places))):
            self.places[str(row["id"])] = {f: str(row.get(f) or "") for f in ACCOUNT_PLACE_FIELDS}

    def _is(self, ref: object, module: str) -> bool:
        return bool(ref) and self.prefixes().module(ref) == module

    def _rows(self, module: str, fields: tuple[str, ...], ids: list[str]) -> list[dict[str, Any]]:
        return rows_by_id(self.client, module, ids, f"id, {', '.join(fields)}")

    def _contact(self, *refs: object) -> str | None:
        return next((str(r) for r in refs if self._is(r, "Contacts")), None)

    def deal_customer(self, deal: str, related_to: object, contact_id: object) -> tuple[str, str | None]:
        """A deal's customer and the fallback taken. A contact in ``related_to`` (vtiger 7 and
        older allowed one there) stands where ``contact_id`` would."""
        organisation = related_to if self._is(related_to, "Accounts") else None
        contact = self._contact(contact_id, related_to)
        return customer_of(deal, organisation, self.account_of_contact.get(contact or ""), contact)

    def activity_customer(self, parent_id: object, contact_id: object) -> tuple[str, str | None] | None:
        """A call's customer and the fallback taken, or None for a call about no customer."""
        if self._is(parent_id, "Accounts"):
            return str(parent_id), None
        if (refs := self.deals.get(str(parent_id))) is not None:
            return self.deal_customer(str(parent_id), *refs)
        contact = self._contact(contact_id, parent_id)
        if contact is None:
            return None
        if organisation := self.account_of_contact.get(contact):
            return organisation, CONTACT_ORGANISATION
        return contact, CONTACT

    def organisation(self, customer: str) -> str | None:
        """The customer when it is an organisation (the one with a billing address)."""
        return customer if self._is(customer, "Accounts") else None

    def place(self, account: str | None) -> dict[str, str]:
        """The account's billing city, state and country (empty strings when unknown)."""
        return self.places.get(account or "", dict.fromkeys(ACCOUNT_PLACE_FIELDS, ""))
