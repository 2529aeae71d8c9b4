"""``SALESPULSE_FETCH_RECORDS``: how many records one fetch hands to the engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from salespulse.streams.pipeline.app import create_app
from salespulse.streams.settings import Settings, SettingsError


def test_fetch_records_defaults_to_15000_and_reaches_faust(tmp_path: Path) -> None:
    settings = Settings.from_env({"SALESPULSE_DATA_DIR": str(tmp_path)})
    assert settings.fetch_records == 15_000
    small = Settings.from_env({"SALESPULSE_DATA_DIR": str(tmp_path), "SALESPULSE_FETCH_RECORDS": "2000"})
    app, _ = create_app(small)
    assert app.conf.broker_max_poll_records == 2000


@pytest.mark.parametrize("value", ["0", "-5"])
def test_fetch_records_below_one_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="SALESPULSE_FETCH_RECORDS"):
        Settings.from_env({"SALESPULSE_FETCH_RECORDS": value})
