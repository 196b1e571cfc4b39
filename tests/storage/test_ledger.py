"""The append-only ledger: whole fsync'd lines, the folder fsync'd when the file is created, a torn tail
from a killed writer ignored then cut, a line another writer appended never cut, and a second writer
holding the folder refused rather than raced."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from scaleflow.files import UnreadableRunFile
from scaleflow.storage.folder_lock import FolderBusy, folder_lock
from scaleflow.storage.ledger import Ledger

from lock_holder import held_by_another_process


def test_records_round_trip_in_write_order(tmp_path):
    ledger = Ledger(tmp_path / "new", "x.jsonl")
    assert ledger.records() == []
    ledger.append({"id": "a", "score": 0.5})
    ledger.append_many([{"id": "b"}, {"id": "c", "nested": {"k": [1, 2]}}])
    assert ledger.records() == [{"id": "a", "score": 0.5}, {"id": "b"}, {"id": "c", "nested": {"k": [1, 2]}}]
    assert ledger.path.read_bytes().count(b"\n") == 3
    with pytest.raises(TypeError):
        ledger.append_many([{"id": "d"}, {"bad": object()}])
    assert len(ledger.records()) == 3  # a record that is not JSON writes nothing, not even its neighbours


def test_the_first_append_fsyncs_the_folder_too(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    ledger = Ledger(tmp_path, "x.jsonl")
    ledger.append({"id": "a"})
    assert synced == ["file", "folder"]  # the line, then the new file's name in its folder
    ledger.append({"id": "b"})
    assert synced == ["file", "folder", "file"]  # the file exists: only the line


def test_a_torn_tail_from_a_killed_writer_is_ignored_then_cut(tmp_path):
    ledger = Ledger(tmp_path, "x.jsonl")
    ledger.append({"id": "a"})
    killed = subprocess.run([sys.executable, "-c", "import os, sys\nf = open(sys.argv[1], 'ab')\n"
                             "f.write(b'{\"id\": \"b\", \"sta'); f.flush(); os.kill(os.getpid(), 9)", str(ledger.path)])
    assert killed.returncode == -9  # died mid-line, as a kill -9 mid-write leaves it
    assert ledger.records() == [{"id": "a"}]
    ledger.append({"id": "b", "status": "ok"})
    assert ledger.path.read_text().splitlines() == ['{"id": "a"}', '{"id": "b", "status": "ok"}']


def test_a_line_appended_after_our_read_is_never_cut(tmp_path):
    ledger = Ledger(tmp_path, "x.jsonl")
    ledger.append({"id": "a"})
    assert len(ledger.records()) == 1  # what we read
    with open(ledger.path, "ab") as f:  # another writer appends a whole line after our read
        f.write(b'{"id": "other"}\n')
    ledger.append({"id": "b"})  # (the old store truncated to what it had read, cutting it)
    assert [r["id"] for r in ledger.records()] == ["a", "other", "b"]


def test_a_long_file_with_a_torn_tail_keeps_every_whole_line(tmp_path):
    ledger = Ledger(tmp_path, "x.jsonl")
    ledger.append_many([{"i": i, "pad": "x" * 100} for i in range(2000)])  # far more than one read-back chunk
    with open(ledger.path, "ab") as f:
        f.write(b'{"i": 2000, "pad": "' + b"x" * 70_000)  # a torn line longer than a chunk
    ledger.append({"i": 2001})
    assert [r["i"] for r in ledger.records()] == [*range(2000), 2001]


def test_a_second_writer_is_refused_not_raced(tmp_path):
    ledger = Ledger(tmp_path, "x.jsonl")
    ledger.append({"id": "a"})
    with open(ledger.path, "ab") as f:
        f.write(b'{"id": "in prog')  # the holder's line, half written
    with held_by_another_process(tmp_path) as holder:
        with pytest.raises(FolderBusy, match=f"pid {holder.pid} on "):
            ledger.append({"id": "b"})
    assert ledger.path.read_bytes().endswith(b'{"id": "in prog')  # its tail was not cut under it
    with folder_lock(tmp_path):  # the holder is gone; inside our own hold, appending is re-entrant
        ledger.append({"id": "b"})
    assert [r["id"] for r in ledger.records()] == ["a", "b"]


def test_a_damaged_line_is_named(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"id": "a"}\nnot json\n')
    with pytest.raises(UnreadableRunFile, match=r"x.jsonl: line 2 is not a JSON record"):
        Ledger(tmp_path, "x.jsonl").records()
    assert json.loads((tmp_path / "x.jsonl").read_text().splitlines()[0]) == {"id": "a"}
