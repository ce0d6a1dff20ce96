"""Where serve makes its temporary state: a RAM-backed directory with room, else the system's temp dir."""

from __future__ import annotations

import os

from mock_server.server.scratch import scratch_parent


def test_a_writable_directory_with_room_is_chosen(tmp_path, monkeypatch):
    monkeypatch.delenv("TMPDIR", raising=False)
    assert scratch_parent(1024, str(tmp_path)) == str(tmp_path)


def test_too_little_room_falls_back_to_the_system_temp_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TMPDIR", raising=False)
    stat = os.statvfs(tmp_path)
    assert scratch_parent(stat.f_bavail * stat.f_frsize + 2**30, str(tmp_path)) is None


def test_a_missing_or_read_only_directory_falls_back(tmp_path, monkeypatch):
    monkeypatch.delenv("TMPDIR", raising=False)
    assert scratch_parent(1024, str(tmp_path / "absent")) is None
    if os.geteuid() != 0:  # root may write anywhere
        read_only = tmp_path / "ro"
        read_only.mkdir(mode=0o500)
        assert scratch_parent(1024, str(read_only)) is None


def test_tmpdir_named_by_the_user_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert scratch_parent(1024, str(tmp_path)) is None  # None: tempfile then uses TMPDIR
