"""HOSPICONNECT_LOG_LEVEL sets the level of the application's loggers; an unknown value falls back to INFO, said
once at start-up."""

from __future__ import annotations

import dataclasses
import logging

from hospiconnect import create_app


def test_the_log_level_setting_applies_and_an_unknown_one_falls_back_to_info(rt, caplog):
    logger = logging.getLogger("hospiconnect")
    before = logger.level
    try:
        create_app(dataclasses.replace(rt.settings, log_level="debug"))
        assert logger.level == logging.DEBUG
        create_app(dataclasses.replace(rt.settings, log_level="WARNING"))
        assert logger.level == logging.WARNING
        with caplog.at_level(logging.WARNING, logger="hospiconnect"):
            create_app(dataclasses.replace(rt.settings, log_level="bavard"))
            assert logger.level == logging.INFO
        assert "HOSPICONNECT_LOG_LEVEL inconnu" in caplog.text
    finally:
        logger.setLevel(before)
