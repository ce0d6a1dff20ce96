"""The package's public face: every name in __all__ resolves, and importing it loads no test-only library."""

from __future__ import annotations

import subprocess
import sys

import mock_server


def test_every_public_name_resolves_to_the_object_its_module_defines():
    from mock_server import inprocess, xei

    assert set(mock_server.__all__) == {"__version__", *mock_server._EXPORTS}
    for name in mock_server.__all__:
        assert getattr(mock_server, name) is not None
    assert mock_server.synthflow_mock is inprocess.synthflow_mock
    assert mock_server.parse_xei is xei.parse


def test_importing_the_package_loads_no_test_library():
    code = ("import sys, mock_server, mock_server.cli, mock_server.http.wsgi; "
            "print(sorted(m for m in ('requests', 'responses', 'pytest', 'hypothesis') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
