"""The folder lock: re-entrant for its holder, refused to another process with one line naming the holder,
never stale (released by a kill -9), and a warning instead of a lock where there are no file locks."""
from __future__ import annotations

import logging
import os
import pickle

import pytest

from scaleflow.storage import folder_lock as locks
from scaleflow.storage.folder_lock import FolderBusy, check_not_busy, folder_lock, holds, lock_holder

from lock_holder import held_by_another_process, someone_else_can_lock


class SearchBusy(FolderBusy):
    doing = "another search is writing this folder"
    advice = "choose another --out"


def test_reentrant_for_its_holder_and_released_after(tmp_path):
    folder = tmp_path / "new" / "folder"
    with folder_lock(folder):
        assert folder.is_dir() and holds(folder)
        check_not_busy(folder)  # the holder itself is not refused
        with folder_lock(folder, SearchBusy):
            assert not someone_else_can_lock(folder)
        assert not someone_else_can_lock(folder) and holds(folder)
        assert lock_holder(folder).startswith(f"pid {os.getpid()} on ")
    assert someone_else_can_lock(folder) and not holds(folder)


def test_another_process_is_refused_in_one_line_and_kill_9_leaves_no_stale_lock(tmp_path):
    with held_by_another_process(tmp_path) as other:
        with pytest.raises(SearchBusy) as looked:
            check_not_busy(tmp_path, SearchBusy)
        with pytest.raises(SearchBusy) as took:
            with folder_lock(tmp_path, SearchBusy):
                pass
        for info in (looked, took):
            message = str(info.value)
            assert message.startswith(f"{tmp_path}: another search is writing this folder (pid {other.pid} on ")
            assert " since " in message and message.endswith("); choose another --out")
            assert "\n" not in message and info.value.holder.startswith(f"pid {other.pid} on ")
        assert not holds(tmp_path)
    with folder_lock(tmp_path):  # the holder was killed: the lock is free at once
        assert lock_holder(tmp_path).startswith(f"pid {os.getpid()} ")


def test_the_busy_error_survives_pickling(tmp_path):
    err = SearchBusy(tmp_path, "pid 1 on h since t")
    again = pickle.loads(pickle.dumps(err))  # as Ray and multiprocessing send it
    assert type(again) is SearchBusy and str(again) == str(err) and again.holder == "pid 1 on h since t"


def test_without_file_locks_it_warns_once_and_goes_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(locks, "fcntl", None)
    folder = tmp_path / "new"
    with caplog.at_level(logging.WARNING, logger="scaleflow.storage.folder_lock"):
        for _ in range(3):
            with folder_lock(folder):
                check_not_busy(folder)
                assert folder.is_dir()  # created all the same, for what the holder writes in it
    assert [r.getMessage() for r in caplog.records] == [
        f"{folder}: this platform has no file locks; a second writer into it would not be refused"]
