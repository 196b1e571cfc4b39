"""Text in the loop: a decoder's texts reach the objective, the records, best.json and ask files; an encoder's
round trip is recorded and, with a minimum, decides what counts."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from scaleflow.search.ask_tell import Search
from scaleflow.search.loop import run_search, search_ledger
from scaleflow.search.methods import build_method
from scaleflow.search.objectives import Objective, ObjectiveError
from scaleflow.search.text_hooks import TextHooks, load_hooks


def hooks_for(problem, min_roundtrip=None) -> TextHooks:
    """A decoder that names the nearest reference row ("ref i (decoded)") and an encoder that maps such a text
    back to row i: the round trip's cosine is the candidate's cosine to that row."""
    reference = problem.reference

    def decoder(x):
        nearest = torch.cdist(x.double(), reference.double()).argmin(1)
        return [f"ref {int(i)} (decoded)" for i in nearest]

    def encoder(texts):
        return torch.stack([reference[int(t.split()[1])] for t in texts])

    return TextHooks(decoder, encoder, min_roundtrip, "test:decoder", "test:encoder")


def test_decoded_texts_reach_the_objective_and_the_records(make_problem, tmp_path):
    seen = []

    def objective(seed):
        def score(x, texts=None):
            seen.append(list(texts))
            return torch.ones(len(x))
        return Objective(score, "t")

    problem = make_problem(objective, texts=True)
    problem = dataclasses.replace(problem, hooks=hooks_for(problem))
    run_search(problem, build_method("prior", {}), 16, 8, 0, tmp_path)
    records = search_ledger(tmp_path).records()
    generated = [r for r in records if r["pool_row"] is None]
    assert generated and all(r["text"].endswith("(decoded)") and r["text_is"] == "decoded" for r in generated)
    assert all(r["text"] == f"pool {r['pool_row']}" and r["text_is"] == "pool row" for r in records if r["pool_row"] is not None)
    assert seen[1] == [r["text"] for r in records[8:]]  # the objective got exactly the recorded texts
    for r in generated:  # the round trip: the candidate's cosine to the row its text names
        row = problem.reference[int(r["text"].split()[1])]
        expected = torch.nn.functional.cosine_similarity(torch.tensor(r["embedding"]).double(), row.double(), dim=0)
        assert r["roundtrip_cosine"] == pytest.approx(float(expected), abs=1e-5)
    assert "roundtrip_ok" not in records[0]  # recorded, not required


def test_a_roundtrip_minimum_decides_what_counts(make_problem, tmp_path):
    problem = make_problem(texts=True)
    problem = dataclasses.replace(problem, hooks=hooks_for(problem, min_roundtrip=0.99999))
    outcome = run_search(problem, build_method("prior", {}), 16, 8, 0, tmp_path)
    records = search_ledger(tmp_path).records()
    generated = [r for r in records if r["pool_row"] is None]
    assert all(not r["roundtrip_ok"] for r in generated if r["roundtrip_cosine"] < 0.99999)
    counted = outcome.history.counts.tolist()
    assert counted == [r["valid"] and r["novel"] and r["roundtrip_ok"] for r in records]


def test_ask_files_hold_the_decoded_texts(make_problem, tmp_path):
    problem = make_problem(texts=True)
    problem = dataclasses.replace(problem, hooks=hooks_for(problem))
    search = Search(problem, build_method("prior", {}), tmp_path)
    search.tell({c["id"]: 0.0 for c in search.ask(4)})
    batch = search.ask(4)
    assert all(c["text_is"] == "decoded" and c["text"].endswith("(decoded)") and "roundtrip_cosine" in c for c in batch)


def test_hook_errors_are_one_line():
    with pytest.raises(ValueError, match="--min-roundtrip needs both --decoder and --encoder"):
        load_hooks(decoder="x:y", min_roundtrip=0.5)
    with pytest.raises(ValueError, match="a cosine, between -1 and 1"):
        load_hooks(min_roundtrip=2.0)
    bad = TextHooks(decoder=lambda x: ["one"], decoder_name="m:f")
    with pytest.raises(ObjectiveError, match="--decoder m:f: must return a list of 3 strings"):
        bad.decode(torch.zeros(3, 2))
    broken = TextHooks(encoder=lambda texts: torch.zeros(1, 2), encoder_name="m:g")
    with pytest.raises(ObjectiveError, match=r"--encoder m:g: must return finite embeddings of shape \[3, 2\]"):
        broken.roundtrip(torch.zeros(3, 2), ["a", "b", "c"])


def test_a_log_density_minimum_no_real_row_meets_leaves_nothing_counted(make_problem, tmp_path):
    problem = dataclasses.replace(make_problem(), min_log_density=1e9)
    outcome = run_search(problem, build_method("prior", {}), 16, 8, 0, tmp_path)
    records = search_ledger(tmp_path).records()
    assert outcome.best is None and not outcome.history.counts.any()
    assert all(r["log_density_ok"] is False for r in records)
    loose = dataclasses.replace(make_problem(), min_log_density=-1e9)
    assert run_search(loose, build_method("prior", {}), 8, 8, 0, tmp_path / "loose").history.counts.any()
