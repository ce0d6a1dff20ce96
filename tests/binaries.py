"""The programs the tests drive (SIPp, redis-server, baresip, tshark), found on PATH or named as missing."""

from __future__ import annotations

import os
import shutil

import pytest


def require(binary: str, package: str) -> str:
    """The path of ``binary``. Missing under CI (``CI`` set): a failure, since ``.ci/install`` installs the
    Debian ``package``; elsewhere, a skip that says what to install."""
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is not installed; .ci/install must install the Debian package {package}")
        pytest.skip(f"{binary} not installed (apt-get install {package})")
    return path
