"""JSON with exact numbers: the one way events are read and written outside the fast path.

A JSON number with a fraction or an exponent becomes a ``Decimal``, never a float: a float
holds 15 to 17 significant digits, and an amount of 10^15 rials with two decimals has 18.
Integers stay ``int`` (of any size), and a ``Decimal`` is written back as the same JSON
number, so an event passes through ingest, the producer SDK and the connectors unchanged.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

__all__ = ["DecodeError", "dumps", "loads"]

DecodeError = (msgspec.DecodeError, RecursionError)

_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")


def loads(raw: bytes | str) -> Any:
    """Decode JSON, numbers exactly; raises one of :data:`DecodeError`."""
    return _decoder.decode(raw)


def dumps(obj: Any) -> bytes:
    """Encode JSON, a ``Decimal`` as a number with its digits as they are."""
    return _encoder.encode(obj)
