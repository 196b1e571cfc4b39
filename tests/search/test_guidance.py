"""Guidance: off is plain sampling bit for bit, the windows are exact, the cap and the clip bound the term,
the uncertainty rule, and on a toy GP with a known maximum the guided step follows the acquisition gradient."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from scaleflow.flows.registry import create_flow
from scaleflow.nets.registry import create_model
from scaleflow.sampling.sample import generate
from scaleflow.sampling.velocity import VelocityField
from scaleflow.search.gp import AcquisitionGuide, fit_gp
from scaleflow.search.guidance import FunctionGuide, GuidanceConfig, GuidedVelocity, guidance_term

DIM = 6


def tiny_field(prediction: str = "x1", seed: int = 0) -> VelocityField:
    torch.manual_seed(seed)
    model = create_model("mlp", scale="tiny", input_dim=DIM, hidden_dim=16).eval().requires_grad_(False)
    return VelocityField(model, create_flow("icfm"), prediction)


class ZeroVelocity(nn.Module):
    """A network that predicts zero velocity: samples stay at their noise unless guided."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def linear_guide(direction: torch.Tensor) -> FunctionGuide:
    return FunctionGuide(lambda x: x @ direction)


@pytest.mark.parametrize("prediction", ["x1", "velocity"])
@pytest.mark.parametrize("solver", ["euler", "heun", "rk4"])
def test_guidance_off_is_plain_sampling_bit_for_bit(prediction, solver):
    field = tiny_field(prediction)
    plain = generate(field, 16, DIM, solver, 10, seed=3).x
    off = GuidedVelocity(field, linear_guide(torch.ones(DIM)), GuidanceConfig(strength=0.0))
    assert torch.equal(generate(off, 16, DIM, solver, 10, seed=3).x, plain)
    on = GuidedVelocity(field, linear_guide(torch.ones(DIM)), GuidanceConfig(strength=5.0))
    assert not torch.equal(generate(on, 16, DIM, solver, 10, seed=3).x, plain)


@pytest.mark.parametrize("steps, guided", [(50, list(range(2, 40))), (20, list(range(1, 16))), (25, list(range(1, 20))),
                                           (100, list(range(4, 80)))])
def test_windows_are_the_first_4_and_last_20_percent_of_steps(steps, guided):
    config = GuidanceConfig(strength=1.0)
    assert [i for i in range(steps) if config.guided_step(i, steps)] == guided
    field = GuidedVelocity(tiny_field(), linear_guide(torch.ones(DIM)), config)
    generate(field, 4, DIM, "heun", steps)
    assert field.trace.guided_steps == guided
    # heun evaluates twice per guided step (both stages of a step belong to it)
    assert len(field.trace.term_to_velocity) == 2 * len(guided)


def test_guided_evaluations_change_only_inside_the_window():
    field = tiny_field("velocity")
    config = GuidanceConfig(strength=3.0, cap=None)
    guided = GuidedVelocity(field, linear_guide(torch.ones(DIM)), config)
    x, t = torch.randn(5, DIM), torch.full((5,), 0.5)
    for step, expect_equal in [(0, True), (1, False), (15, False), (16, True), (19, True)]:
        guided.begin_step(step, 20)
        assert torch.equal(guided(x, t), field(x, t)) == expect_equal, step


def test_cap_and_clip_bound_the_term():
    torch.manual_seed(0)
    v, g = torch.randn(64, DIM), 100 * torch.randn(64, DIM)
    assert torch.allclose(guidance_term(v, g, GuidanceConfig(strength=2.0, cap=None)), 2.0 * g)
    capped = guidance_term(v, g, GuidanceConfig(strength=2.0, cap=0.5))
    assert (capped.norm(dim=1) <= 0.5 * v.norm(dim=1) * (1 + 1e-6)).all()
    assert torch.allclose(torch.nn.functional.cosine_similarity(capped, g), torch.ones(64), atol=1e-6)  # direction kept
    clipped = guidance_term(v, g, GuidanceConfig(strength=2.0, clip=3.0, cap=None))
    assert torch.allclose(clipped.norm(dim=1), torch.full((64,), 6.0), rtol=1e-5)  # |g| >> 3: all clipped
    small = 1e-3 * g
    assert torch.allclose(guidance_term(v, small, GuidanceConfig(strength=2.0, clip=1e6, cap=None)), 2.0 * small)
    # A whole guided step moves at most h * cap * |v| away from the plain step.
    field = tiny_field("velocity")
    x, t = torch.randn(8, DIM), torch.full((8,), 0.3)
    guided = GuidedVelocity(field, linear_guide(1e3 * torch.ones(DIM)), GuidanceConfig(strength=10.0, cap=0.25))
    guided.begin_step(5, 20)
    v = field(x, t)
    assert ((guided(x, t) - v).norm(dim=1) <= 0.25 * v.norm(dim=1) * (1 + 1e-5)).all()


def test_uncertainty_divides_the_strength_by_one_plus_two_sigma():
    v, g = torch.randn(3, DIM), torch.randn(3, DIM)
    sigma = torch.tensor([0.0, 0.5, 2.0])
    term = guidance_term(v, g, GuidanceConfig(strength=4.0, cap=None), sigma)
    assert torch.allclose(term, 4.0 / (1 + 2 * sigma).unsqueeze(1) * g)
    off = guidance_term(v, g, GuidanceConfig(strength=4.0, cap=None, uncertainty=False), sigma)
    assert torch.allclose(off, 4.0 * g)


def test_gradient_is_taken_at_the_predicted_endpoint_in_the_original_space():
    field = tiny_field("velocity")
    scale, shift = torch.linspace(0.5, 2.0, DIM), torch.full((DIM,), 3.0)
    direction = torch.randn(DIM)
    guided = GuidedVelocity(field, linear_guide(direction), GuidanceConfig(strength=1.0, cap=None),
                            to_original=lambda z: z * scale + shift)
    guided.begin_step(5, 20)
    x, t = torch.randn(4, DIM), torch.full((4,), 0.4)
    # d/dz of direction . (z * scale + shift) = direction * scale, whatever the point
    assert torch.allclose(guided(x, t) - field(x, t), (direction * scale).expand(4, DIM), atol=1e-6)


def test_toy_gp_guided_step_follows_the_acquisition_gradient_to_the_known_maximum():
    torch.manual_seed(0)
    peak = torch.tensor([0.6, -0.4])
    x = torch.rand(40, 2) * 4 - 2
    y = -((x - peak) ** 2).sum(1)
    surrogate = fit_gp(x, y)
    guide = AcquisitionGuide(surrogate, "mean")
    field = VelocityField(ZeroVelocity(), create_flow("icfm"), "velocity")
    guided = GuidedVelocity(field, guide, GuidanceConfig(strength=1.0, cap=None, uncertainty=False))
    guided.begin_step(5, 20)
    points = torch.tensor([[-1.5, 1.0], [1.5, 1.2], [0.0, -1.5]], dtype=torch.float64)
    term = guided(points, torch.full((3,), 0.5, dtype=torch.float64))
    z = points.clone().requires_grad_(True)
    value, _ = guide(z)
    (gradient,) = torch.autograd.grad(value.sum(), z)
    assert torch.allclose(term, gradient, atol=1e-8)  # the step is the acquisition gradient
    toward_peak = torch.nn.functional.cosine_similarity(term, peak.double() - points)
    assert (toward_peak > 0.9).all(), toward_peak
    # Sampling: guided endpoints have a higher acquisition than the unguided ones from the same noise.
    plain = generate(field, 32, 2, "euler", 20, seed=1).x.double()
    steered = GuidedVelocity(field, guide, GuidanceConfig(strength=0.5, cap=None, uncertainty=False))
    moved = generate(steered, 32, 2, "euler", 20, seed=1).x.double()
    with torch.no_grad():
        assert guide(moved)[0].mean() > guide(plain)[0].mean() + 0.5
        assert (moved - peak.double()).norm(dim=1).mean() < (plain - peak.double()).norm(dim=1).mean()


def test_config_rejects_bad_knobs():
    for bad in (dict(strength=-1.0), dict(clip=0.0), dict(cap=-0.5), dict(start=0.5, stop=0.5), dict(stop=1.0)):
        with pytest.raises(ValueError):
            GuidanceConfig(**bad)


def test_function_guide_must_be_differentiable():
    guided = GuidedVelocity(tiny_field(), FunctionGuide(lambda x: x.sum(1).detach()), GuidanceConfig())
    guided.begin_step(3, 20)
    with pytest.raises(ValueError, match="differentiabl"):
        guided(torch.randn(2, DIM), torch.full((2,), 0.5))


def test_diversity_term_pushes_the_rows_of_a_batch_apart():
    from scaleflow.search.guidance import DiversityGuide

    def base(x):  # flat: only the diversity term moves points
        return x.sum(1) * 0.0, None

    guide = DiversityGuide(base, 1.0)
    x = torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]])
    value, sigma = guide(x)
    unit = torch.nn.functional.normalize(x, dim=1)
    cos = unit @ unit.T
    expected = -(cos.sum(1) - 1.0) / 2
    assert torch.allclose(value, expected) and sigma is None
    # A gradient step on the summed value lowers the mean pairwise cosine.
    z = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(guide(z)[0].sum(), z)
    moved = torch.nn.functional.normalize(x + 0.1 * grad, dim=1)
    assert (moved @ moved.T).triu(1).sum() < cos.triu(1).sum()
    assert torch.equal(DiversityGuide(base, 0.0)(x)[0], base(x)[0])
    with pytest.raises(ValueError, match="diversity"):
        DiversityGuide(base, -1.0)


def test_hinge_leaves_row_0_alone_and_pushes_only_rows_closer_than_its_cosine():
    from scaleflow.search.guidance import DiversityGuide

    direction = torch.tensor([1.0, 0.0, 0.0])

    def base(x):  # values rows by their first coordinate
        return x @ direction, None

    guide = DiversityGuide(base, 10.0, max_cosine=0.5)
    # Cosines: 0.8 between rows 0 and 1 and between rows 2 and 3, 0.36 between rows 1 and 3, 0 elsewhere.
    x = torch.tensor([[2.0, 0.0, 0.0], [1.6, 1.2, 0.0], [0.0, 0.0, 1.5], [0.0, 1.2, 1.6]])
    value, sigma = guide(x)
    penalty = 10.0 * (0.8 - 0.5) ** 2
    assert sigma is None
    # Row 0: free. Row 1: 0.8 to row 0. Rows 2 and 3: 0.8 to each other (0.36 < 0.5 between rows 1 and 3: nothing).
    assert torch.allclose(value, torch.tensor([2.0, 1.6 - penalty, -penalty, -penalty]), atol=1e-6)
    z = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(guide(z)[0].sum(), z)
    assert torch.allclose(grad[0], direction)  # nothing pulls row 0 around, though row 1 is close to it
    unit = lambda v: torch.nn.functional.normalize(v, dim=0)  # noqa: E731
    assert unit(x[1] + 0.01 * grad[1]) @ unit(x[0]) < 0.8  # row 1 moves away from row 0
    # The hinge's own gradient, by hand: d/dx_i of -w relu(cos - c)^2 is -2 w (cos - c) dcos/dx_i, with
    # dcos/dx_i = (u_j - cos u_i) / |x_i|. Row 0 pushes row 1 once; rows 2 and 3 push each other, and each pair
    # term sits in both rows' values, so twice.
    def push(i, j, times):
        u_i, u_j = unit(x[i]), unit(x[j])
        cos = u_i @ u_j
        return -times * 2 * 10.0 * (cos - 0.5) * (u_j - cos * u_i) / x[i].norm()

    assert torch.allclose(grad[1] - direction, push(1, 0, 1), atol=1e-5)
    assert torch.allclose(grad[2] - direction, push(2, 3, 2), atol=1e-5)
    assert torch.allclose(grad[3] - direction, push(3, 2, 2), atol=1e-5)
    # A batch already farther apart than the cosine is left as the guide has it.
    apart = torch.eye(3) * 2.0
    assert torch.equal(guide(apart)[0], base(apart)[0])
    with pytest.raises(ValueError, match="diversity cosine"):
        DiversityGuide(base, 1.0, max_cosine=1.0)


def test_guidance_refuses_a_caller_that_does_not_announce_steps():
    guided = GuidedVelocity(tiny_field(), linear_guide(torch.ones(DIM)), GuidanceConfig(strength=1.0))
    with pytest.raises(ValueError, match="fixed-step solver"):
        guided(torch.randn(2, DIM), torch.full((2,), 0.5))


@pytest.mark.parametrize("acquisition", ["ucb", "mean"])
def test_closed_form_acquisitions_equal_botorchs(acquisition):
    """The guide's UCB and posterior mean (one joint posterior over the batch) are BoTorch's q = 1 values, with
    the same gradients; the filter's ranking values too."""
    from scaleflow.search.gp import acquisition_values, make_acquisition

    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 7, generator=g)
    surrogate = fit_gp(x, (x[:, 0] - x[:, 1] ** 2).double())
    query = (x[:16] + 0.3 * torch.randn(16, 7, generator=g)).double().requires_grad_(True)
    value, sigma = AcquisitionGuide(surrogate, acquisition)(query)
    (gradient,) = torch.autograd.grad(value.sum(), query)
    reference = make_acquisition(acquisition, surrogate)(query.unsqueeze(1)).reshape(16) / surrogate.score_std
    (reference_gradient,) = torch.autograd.grad(reference.sum(), query)
    assert torch.allclose(value, reference, rtol=1e-9, atol=1e-12)
    assert torch.allclose(gradient, reference_gradient, rtol=1e-7, atol=1e-10)
    assert torch.allclose(sigma, surrogate.posterior_std(query.detach()), rtol=1e-7, atol=1e-10)
    ranked = acquisition_values(surrogate, acquisition, query.detach())
    assert torch.allclose(ranked, reference.detach() * surrogate.score_std, rtol=1e-9, atol=1e-12)


def test_the_hinge_never_asks_a_batch_to_be_more_spread_than_real_rows_are(problem):
    from types import SimpleNamespace

    from scaleflow.search.guidance import median_pairwise_cosine
    from scaleflow.search.methods.prior import diversity_hinge_cosine

    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # pairwise cosines 0, 0.707, 0.707
    assert median_pairwise_cosine(rows) == pytest.approx(2 ** -0.5)
    assert diversity_hinge_cosine(SimpleNamespace(median_cosine=median_pairwise_cosine(rows)), 0.5) == pytest.approx(2 ** -0.5)
    assert diversity_hinge_cosine(SimpleNamespace(median_cosine=0.0), 0.5) == 0.5  # real rows far apart: the setting stands
    assert diversity_hinge_cosine(SimpleNamespace(median_cosine=0.0), None) is None  # the mean-cosine form has no hinge
    # A search problem computes its training rows' median cosine once.
    assert problem.median_cosine == median_pairwise_cosine(problem.reference)
    assert "median_cosine" in vars(problem)
