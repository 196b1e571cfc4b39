"""One search process per folder: `run_search` into a folder another process holds is refused in one line
before anything is scored; the holder may nest searches inside its own hold."""
from __future__ import annotations

import pytest

from scaleflow.search.loop import SearchFolderBusy, run_search, search_folder_lock, search_ledger
from scaleflow.search.methods import METHODS
from scaleflow.search.objectives import Objective
from scaleflow.search.report import SEARCH_FILE
from scaleflow.training.config import ConfigError

from lock_holder import held_by_another_process, someone_else_can_lock


def test_a_search_into_a_busy_folder_is_refused_in_one_line(make_problem, tmp_path):
    scored = []
    problem = make_problem(lambda seed: Objective(lambda x: scored.append(len(x)) or x[:, 0], "first"))
    with held_by_another_process(tmp_path) as holder:
        with pytest.raises(SearchFolderBusy) as info:
            run_search(problem, METHODS["random"](), 8, 4, 0, tmp_path)
    message = str(info.value)
    assert isinstance(info.value, ConfigError) and "\n" not in message  # the CLI prints it as one error line
    assert message.startswith(f"{tmp_path}: another search is writing this folder (pid {holder.pid} on ")
    assert message.endswith("wait for it to finish or stop it, or choose another --out")
    assert scored == [] and not (tmp_path / SEARCH_FILE).exists()  # refused before paying the objective
    run_search(problem, METHODS["random"](), 8, 4, 0, tmp_path)  # the holder is gone: no stale lock
    assert scored == [4, 4] and len(search_ledger(tmp_path).records()) == 8


def test_the_holder_nests_searches_inside_its_hold(problem, tmp_path):
    with search_folder_lock(tmp_path):
        for seed in (0, 1):
            run_search(problem, METHODS["random"](), 8, 4, seed, tmp_path)  # re-entrant: not refused
            assert not someone_else_can_lock(tmp_path)  # still held between searches
    assert someone_else_can_lock(tmp_path)
    assert len(search_ledger(tmp_path).records()) == 16
