"""Where each event type goes: its topic and the data field that is its message key.

Keys decide partitions (Kafka's murmur2 partitioner), and keyed state such as a customer
or a team must live in exactly one partition, so this table is part of the contract.
"""

from __future__ import annotations

from typing import Any, Final

LEADS: Final = "crm.leads"
DEALS: Final = "crm.deals"
ACTIVITIES: Final = "crm.activities"
SURVEYS: Final = "crm.surveys"
MARKET: Final = "crm.market"
DEADLETTER: Final = "crm.deadletter"

INPUT_TOPICS: Final = (LEADS, DEALS, ACTIVITIES, SURVEYS, MARKET)

ROUTES: Final[dict[str, tuple[str, str]]] = {
    "lead.created": (LEADS, "lead_id"),
    "opportunity.created": (LEADS, "opportunity_id"),
    "opportunity.updated": (LEADS, "opportunity_id"),
    "deal.won": (DEALS, "customer_id"),
    "deal.lost": (DEALS, "deal_id"),
    "customer.activity": (ACTIVITIES, "customer_id"),
    "survey.answered": (SURVEYS, ""),
    "competitor.price_observed": (MARKET, "product"),
    "product.price_set": (MARKET, "product"),
    "marketing.spend": (MARKET, "channel"),
}


#: Closes: a ``deal.won`` or ``deal.lost`` that names its opportunity is applied on its own
#: topic and also forwarded, keyed by the opportunity, to the opportunity's partition of
#: ``crm.leads``, where the forecast keeps the opportunity (docs/forecast.md).
CLOSES: Final[dict[str, tuple[str, str]]] = {
    "deal.won": (LEADS, "opportunity_id"),
    "deal.lost": (LEADS, "opportunity_id"),
}


def close_route(event: dict[str, Any]) -> tuple[str, bytes] | None:
    """Topic and message key a validated close is forwarded with, or None for any other event."""
    to = CLOSES.get(event["type"])
    if to is None:
        return None
    opportunity = event["data"].get(to[1])
    return None if opportunity is None else (to[0], str(opportunity).encode())


def route(event: dict[str, Any]) -> tuple[str, bytes]:
    """Topic and message key of a validated event."""
    topic, key_field = ROUTES[event["type"]]
    data = event["data"]
    if not key_field:
        key_field = "customer_id" if data["survey"] == "nps" else "team"
    return topic, str(data[key_field]).encode()
