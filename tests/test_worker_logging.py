"""A worker keeps the log level it is started with.

faust's progress spinner sets the root logger to DEBUG whenever the level asked for is
WARNING or above; then every debug call in aiokafka builds a log record only to drop it,
which cost 3-4% of a worker's time under ``salespulse bench``.
"""

from __future__ import annotations

import logging

import faust
import pytest

from salespulse.streams.pipeline.worker import faust_worker


@pytest.mark.parametrize("level", [logging.WARNING, logging.ERROR, logging.INFO])
def test_the_root_logger_keeps_the_level_asked_for(level: int) -> None:
    worker = faust_worker(faust.App("salespulse-logging-test"), logging.getLevelName(level).lower())
    root = logging.Logger("root-under-test")
    root.addHandler(logging.NullHandler())
    root.setLevel(level)  # what mode's setup_logging has done when faust's hook runs
    worker.on_setup_root_logger(root, level)
    assert root.level == level
    assert not root.isEnabledFor(logging.DEBUG)
    assert len(root.handlers) == 1
