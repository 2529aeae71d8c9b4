"""SalesPulse event contract: one JSON Schema per event type, and its validator."""

from salespulse.schemas.validator import EVENT_TYPES, InvalidEvent, validate_event

__all__ = ["EVENT_TYPES", "InvalidEvent", "validate_event"]
