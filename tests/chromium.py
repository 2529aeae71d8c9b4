"""Headless Chromium (Debian's ``chromium``) on local pages, for the digest tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_PACKAGE = "chromium"  # Debian: apt-get install -y --no-install-recommends chromium


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a throwaway profile and nothing in the background.

    Fails the test (never skips) when Chromium is missing.
    """
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail(
            f"Chromium is not installed: apt-get install -y --no-install-recommends {CHROMIUM_PACKAGE}"
        )
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def screenshot(
    page: Path, shot: Path, profile: Path, size: tuple[int, int]
) -> subprocess.CompletedProcess[str]:
    """Render ``page`` into ``shot``, logging the console to stderr."""
    return chromium(
        profile,
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={shot}",
        f"--window-size={size[0]},{size[1]}",
        page.as_uri(),
    )


def console_errors(stderr: str) -> list[str]:
    """Console messages, uncaught errors and unreadable files Chromium logged."""
    return [
        line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line or "ERR_FILE" in line
    ]
