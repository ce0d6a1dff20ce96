"""Test data every suite shares: one valid prepare_inbound body and one bearer header."""

from __future__ import annotations

VALID_BODY = {
    "from_number": "+15075785607",
    "to_number": "+15551234567",
    "model_id": "1744274157255x646200691892837600",
    "workspace_id": "ws_1",
    "custom_variables": {"name": "erfan", "job": "backend"},
}
AUTH = {"Authorization": "Bearer test-token"}
