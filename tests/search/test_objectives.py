"""Objectives: loading `MODULE:FUNCTION` and `file.py:FUNCTION`, every way a load or a call fails as one
`ObjectiveError` line naming the objective, what a call accepts (tensor, array, list, [N, 1]), who gets
`texts`, the timeout, and the built-in cosine objective."""
from __future__ import annotations

import math
import textwrap
import time

import numpy as np
import pytest
import torch

from scaleflow.search.objectives import (
    Objective,
    ObjectiveError,
    cosine_to,
    load_objective,
)


def write_module(folder, name: str, source: str):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    assert message.strip() == message and message
    return message


# ---------------------------------------------------------------- load_objective


def test_load_from_importable_module(tmp_path, monkeypatch):
    write_module(tmp_path, "objpkg_sf_test/__init__.py", "")
    write_module(tmp_path, "objpkg_sf_test/scores.py", """
        def norm_score(x):
            return x.norm(dim=1)
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = load_objective("objpkg_sf_test.scores:norm_score")
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert fn(x).tolist() == [5.0, 1.0]
    # A function of the package itself loads the same way.
    assert load_objective("scaleflow.search.objectives:cosine_to") is cosine_to


def test_load_from_file(tmp_path):
    path = write_module(tmp_path, "my objective.py", """
        import torch

        def first_coordinate(x, texts=None):
            return x[:, 0] * 2
    """)
    fn = load_objective(f"{path}:first_coordinate")
    assert fn(torch.tensor([[1.5, 0.0], [-1.0, 2.0]])).tolist() == [3.0, -2.0]


def test_load_from_relative_file(tmp_path, monkeypatch):
    write_module(tmp_path, "objs/rel.py", "def f(x):\n    return x.sum(1)\n")
    monkeypatch.chdir(tmp_path)
    assert load_objective("objs/rel.py:f")(torch.ones(2, 3)).tolist() == [3.0, 3.0]


@pytest.mark.parametrize("spec", ["just_a_module", "module:", ":function", "", "file.py"])
def test_load_without_module_and_function_is_one_line(spec):
    with pytest.raises(ObjectiveError) as err:
        load_objective(spec)
    message = one_line(err)
    assert repr(spec) in message and "MODULE:FUNCTION" in message


def test_load_missing_file(tmp_path):
    spec = f"{tmp_path / 'nope.py'}:f"
    with pytest.raises(ObjectiveError) as err:
        load_objective(spec)
    message = one_line(err)
    assert repr(spec) in message and "no such file" in message and "nope.py" in message


def test_load_missing_module():
    spec = "no_such_module_sf_xyz.sub:f"
    with pytest.raises(ObjectiveError) as err:
        load_objective(spec)
    message = one_line(err)
    assert repr(spec) in message and "importing no_such_module_sf_xyz.sub failed" in message
    assert "ModuleNotFoundError" in message


def test_import_error_inside_the_file(tmp_path):
    path = write_module(tmp_path, "broken.py", """
        import no_such_dependency_sf_xyz

        def f(x):
            return x[:, 0]
    """)
    spec = f"{path}:f"
    with pytest.raises(ObjectiveError) as err:
        load_objective(spec)
    message = one_line(err)
    assert repr(spec) in message and "failed" in message
    assert "ModuleNotFoundError" in message and "no_such_dependency_sf_xyz" in message


def test_syntax_error_inside_the_file(tmp_path):
    path = write_module(tmp_path, "syntax.py", "def f(x)\n    return x\n")
    with pytest.raises(ObjectiveError) as err:
        load_objective(f"{path}:f")
    assert "SyntaxError" in one_line(err)


def test_exception_inside_an_importable_module(tmp_path, monkeypatch):
    write_module(tmp_path, "objmod_raises_sf.py", "raise ValueError('bad config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ObjectiveError) as err:
        load_objective("objmod_raises_sf:f")
    message = one_line(err)
    assert "'objmod_raises_sf:f'" in message and "ValueError: bad config" in message


def test_multi_line_import_error_is_still_one_line(tmp_path):
    path = write_module(tmp_path, "multi.py", "raise RuntimeError('first line\\nsecond line')\n")
    with pytest.raises(ObjectiveError) as err:
        load_objective(f"{path}:f")
    assert "first line" in one_line(err)


def test_file_with_a_dataclass_loads(tmp_path):
    path = write_module(tmp_path, "with_dataclass.py", """
        from __future__ import annotations

        from dataclasses import dataclass


        @dataclass
        class Weights:
            scale: float = 2.0


        def score(x):
            return x[:, 0] * Weights().scale
    """)
    assert load_objective(f"{path}:score")(torch.ones(2, 3)).tolist() == [2.0, 2.0]


@pytest.mark.parametrize("body", ["", "f = 3\n"])
def test_missing_or_not_callable_function(tmp_path, body):
    path = write_module(tmp_path, "empty.py", body)
    spec = f"{path}:f"
    with pytest.raises(ObjectiveError) as err:
        load_objective(spec)
    message = one_line(err)
    assert repr(spec) in message and "has no function 'f'" in message


def test_errors_name_the_option_given():
    with pytest.raises(ObjectiveError) as err:
        load_objective("no_colon", option="--score")
    message = one_line(err)
    assert message.startswith("--score 'no_colon': ") and "built-in" not in message
    with pytest.raises(ObjectiveError) as err:
        load_objective("no_colon")
    assert one_line(err).startswith("--objective 'no_colon': ") and "built-in" in str(err.value)


# ---------------------------------------------------------------- Objective.__call__

X = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0], [2.0, 2.0, 2.0]])
SUMS = [6.0, 3.0, 6.0]


@pytest.mark.parametrize("result", [
    lambda x: x.sum(1),  # tensor
    lambda x: x.sum(1).numpy(),  # ndarray
    lambda x: x.sum(1).tolist(),  # list
    lambda x: x.sum(1, keepdim=True),  # [N, 1]
    lambda x: x.sum(1, keepdim=True).numpy().astype(np.float32),
    lambda x: [[v] for v in x.sum(1).tolist()],
    lambda x: x.sum(1).to(torch.int64),
    lambda x: x.sum(1).requires_grad_(True) * 1.0,  # a tensor with a graph
], ids=["tensor", "ndarray", "list", "n1-tensor", "n1-ndarray", "n1-list", "int", "grad"])
def test_call_accepts_tensor_array_list_and_column(result):
    scores = Objective(result, "sum")(X)
    assert scores.dtype == torch.float64 and scores.shape == (3,)
    assert scores.tolist() == SUMS


def test_call_keeps_float64_scores_exactly():
    value = 0.1234567890123456789
    scores = Objective(lambda x: np.full(len(x), value), "f")(X)
    assert scores[0].item() == value  # not rounded through float32


def test_objective_cannot_change_the_callers_candidates():
    x = X.clone()

    def vandal(x):
        x.zero_()
        return x.sum(1)

    assert Objective(vandal, "vandal")(x).tolist() == [0.0, 0.0, 0.0]
    assert torch.equal(x, X)


def test_texts_go_only_to_functions_that_take_them():
    seen = {}

    def plain(x):
        seen["plain"] = True
        return x.sum(1)

    def with_texts(x, texts=None):
        seen["with_texts"] = texts
        return x.sum(1)

    def keyword_only(x, *, texts):
        seen["keyword_only"] = texts
        return x.sum(1)

    def with_kwargs(x, **kwargs):
        seen["with_kwargs"] = kwargs
        return x.sum(1)

    class Callable_:
        def __call__(self, x, texts):
            seen["callable"] = texts
            return x.sum(1)

    texts = ["a", None, "c"]
    assert not Objective(plain, "p").takes_texts
    for fn in (with_texts, keyword_only, with_kwargs, Callable_()):
        assert Objective(fn, "f").takes_texts
    for fn in (plain, with_texts, keyword_only, with_kwargs, Callable_()):
        assert Objective(fn, "f")(X, texts).tolist() == SUMS
    assert seen == {"plain": True, "with_texts": texts, "keyword_only": texts, "with_kwargs": {"texts": texts},
                    "callable": texts}
    # Without texts, a function that takes them is given None.
    Objective(with_texts, "f")(X)
    assert seen["with_texts"] is None


@pytest.mark.parametrize("fn, fragments", [
    (lambda x: x.sum(1)[:2], ["returned shape (2,) for 3 embeddings", "expected [3]"]),
    (lambda x: x, ["returned shape (3, 3) for 3 embeddings"]),
    (lambda x: 1.0, ["returned shape () for 3 embeddings"]),
    (lambda x: None, ["for 3 embeddings"]),
    (lambda x: torch.tensor([1.0, float("nan"), 2.0]), ["1 non-finite score(s)", "3 embeddings"]),
    (lambda x: [float("inf"), -float("inf"), 0.0], ["2 non-finite score(s)"]),
    (lambda x: ["a", "b", "c"], ["returned list, not numbers"]),
    (lambda x: {"a": 1}, ["not numbers"]),
])
def test_bad_results_are_one_line_errors(fn, fragments):
    with pytest.raises(ObjectiveError) as err:
        Objective(fn, "my_objective")(X)
    message = one_line(err)
    assert message.startswith("objective my_objective ")
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_exception_inside_is_one_line():
    def fails(x):
        raise ValueError("no such key\nand a long second line\nand a third")

    with pytest.raises(ObjectiveError) as err:
        Objective(fails, "lookup")(X)
    message = one_line(err)
    assert message == "objective lookup raised ValueError: no such key"
    assert "no such key" in message and "second line" not in message


def test_exception_without_message():
    def fails(x):
        raise ZeroDivisionError()

    with pytest.raises(ObjectiveError) as err:
        Objective(fails, "z")(X)
    assert one_line(err) == "objective z raised ZeroDivisionError"


def test_exception_inside_with_timeout_is_one_line_too():
    with pytest.raises(ObjectiveError) as err:
        Objective(lambda x: 1 / 0, "div", timeout=5.0)(X)
    assert one_line(err) == "objective div raised ZeroDivisionError: division by zero"


def test_keyboard_interrupt_is_not_swallowed():
    def interrupted(x):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Objective(interrupted, "k")(X)


def test_timeout_returns_promptly():
    def slow(x):
        time.sleep(5)
        return x.sum(1)

    began = time.perf_counter()
    with pytest.raises(ObjectiveError) as err:
        Objective(slow, "slow", timeout=0.2)(X)
    took = time.perf_counter() - began
    assert took < 1.0, took
    message = one_line(err)
    assert "objective slow" in message and "no answer within 0.2 s" in message


def test_fast_call_under_timeout_returns_scores():
    assert Objective(lambda x: x.sum(1), "quick", timeout=5.0)(X).tolist() == SUMS


def test_attributes():
    objective = Objective(lambda x: x.sum(1), "named", timeout=2.0, optimum=3.0)
    assert (objective.name, objective.timeout, objective.optimum) == ("named", 2.0, 3.0)


# ---------------------------------------------------------------- cosine_to


def test_cosine_to_is_one_at_the_target_and_scale_free():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(8, generator=g)
    fn = cosine_to(target)
    other = torch.randn(5, 8, generator=g)
    x = torch.cat([target[None], 3.5 * target[None], -target[None], other])
    scores = fn(x)
    assert scores.dtype == torch.float64
    assert scores[0].item() == pytest.approx(1.0, abs=1e-12)
    assert scores[1].item() == pytest.approx(1.0, abs=1e-12)
    assert scores[2].item() == pytest.approx(-1.0, abs=1e-12)
    expected = torch.nn.functional.cosine_similarity(other.double(), target.double()[None], dim=1)
    assert torch.allclose(scores[3:], expected, atol=1e-12)
    assert (scores <= 1 + 1e-12).all()
    # Through the checked Objective, as the loop calls it.
    assert Objective(fn, "t", optimum=1.0)(target[None].float())[0].item() == pytest.approx(1.0, abs=1e-6)


def test_cosine_to_is_orthogonal_zero():
    fn = cosine_to(torch.tensor([1.0, 0.0, 0.0]))
    assert fn(torch.tensor([[0.0, 2.0, 0.0], [1.0, 1.0, 0.0]])).tolist() == pytest.approx([0.0, math.sqrt(0.5)])


def test_cosine_to_copies_its_target():
    target = torch.tensor([1.0, 0.0])
    fn = cosine_to(target)
    target[:] = torch.tensor([0.0, 1.0])  # changing the caller's tensor later does not move the objective
    assert fn(torch.tensor([[1.0, 0.0]])).item() == pytest.approx(1.0)
