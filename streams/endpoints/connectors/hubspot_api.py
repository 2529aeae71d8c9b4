"""The slice of HubSpot's CRM API the HubSpot connector reads, with a private-app token.

HubSpot's webhooks say only that an object was created or a property changed: the amount,
owner, currency and company of a deal, and the owner, place and source of a contact, are
read here, a whole delivery's objects in one batch read. Custom pipelines name their stages
by ids, so whether a stage closes a deal as won or lost, and the stage's label, come from
the pipelines API, cached and refreshed when a stage id it does not know arrives. Any failure is
:class:`VendorUnavailable`: the webhook answers 5xx and HubSpot retries; nothing is guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import aiohttp

from salespulse.streams.endpoints.connectors.base import VendorUnavailable

#: A stage's outcome: "won", "lost", or None for an open stage.
Outcome = str | None

#: The default pipeline's closing stages, known without asking.
DEFAULT_STAGES: dict[str, Outcome] = {"closedwon": "won", "closedlost": "lost"}


def stage_outcome(metadata: dict[str, Any]) -> Outcome:
    """Closed-won is a closed stage at probability 1, closed-lost a closed stage at 0."""
    if str(metadata.get("isClosed", "")).lower() != "true":
        return None
    try:
        probability = float(metadata.get("probability", "nan"))
    except (TypeError, ValueError):
        return None
    return "won" if probability >= 1.0 else "lost" if probability == 0.0 else None


def association_precedence(target: dict[str, Any]) -> tuple[bool, int, str]:
    """Primary associations first, then ascending numeric object ids."""
    labels = {str(t.get("label") or "").casefold() for t in target.get("associationTypes") or ()}
    object_id = str(target.get("toObjectId"))
    return ("primary" not in labels, int(object_id) if object_id.isdigit() else 0, object_id)


class HubSpotApi:
    """Reads objects, associations and deal pipelines from ``SALESPULSE_HUBSPOT_API``."""

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.stages: dict[str, Outcome] = dict(DEFAULT_STAGES)
        self.labels: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None

    async def _call(self, method: str, path: str, body: object = None) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, headers={"Authorization": f"Bearer {self.token}"}
            )
        url = self.base_url + path
        try:
            async with self._session.request(method, url, json=body) as response:
                if response.status in {401, 403}:
                    raise VendorUnavailable(
                        f"HubSpot refused {method} {path} ({response.status}): check SALESPULSE_HUBSPOT_TOKEN"
                        " and the private app's scopes (crm.objects.deals.read, crm.objects.contacts.read,"
                        " crm.objects.companies.read)"
                    )
                if response.status not in {200, 207}:
                    raise VendorUnavailable(f"HubSpot answered {method} {path} with {response.status}")
                answer = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise VendorUnavailable(f"HubSpot API {method} {path} failed: {exc!r}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("results", []), list):
            raise VendorUnavailable(f"HubSpot answered {method} {path} with no results list")
        return answer

    async def read(
        self, object_type: str, ids: Iterable[str], properties: list[str]
    ) -> dict[str, dict[str, Any]]:
        """Properties of each object that exists, by id (``POST /crm/v3/objects/{type}/batch/read``)."""
        inputs = [{"id": i} for i in dict.fromkeys(ids)]
        if not inputs:
            return {}
        answer = await self._call(
            "POST", f"/crm/v3/objects/{object_type}/batch/read", {"properties": properties, "inputs": inputs}
        )
        return {str(r["id"]): dict(r.get("properties") or {}) for r in answer.get("results", [])}

    async def associated(self, from_type: str, to_type: str, ids: Iterable[str]) -> dict[str, str]:
        """Each object's associated ``to_type`` object, by id (v4 associations batch read): the
        one labelled primary, else the lowest id, so the same associations give the same answer
        whatever order HubSpot lists them in."""
        inputs = [{"id": i} for i in dict.fromkeys(ids)]
        if not inputs:
            return {}
        answer = await self._call(
            "POST", f"/crm/v4/associations/{from_type}/{to_type}/batch/read", {"inputs": inputs}
        )
        found: dict[str, str] = {}
        for result in answer.get("results", []):
            targets = result.get("to") or []
            if targets:
                found[str(result["from"]["id"])] = str(min(targets, key=association_precedence)["toObjectId"])
        return found

    async def outcome(self, stage_id: str) -> tuple[bool, Outcome]:
        """Whether a deal stage is known, and what it closes as; reloads the pipelines once if
        the stage is new (stages get added)."""
        if stage_id not in self.stages:
            answer = await self._call("GET", "/crm/v3/pipelines/deals")
            for pipeline in answer.get("results", []):
                for stage in pipeline.get("stages", []):
                    self.stages[str(stage["id"])] = stage_outcome(stage.get("metadata") or {})
                    self.labels[str(stage["id"])] = str(stage.get("label") or "").strip()
        return stage_id in self.stages, self.stages.get(stage_id)

    def label(self, stage_id: str) -> str | None:
        """A stage's label in its pipeline, once :meth:`outcome` has met the stage."""
        return self.labels.get(stage_id) or None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
