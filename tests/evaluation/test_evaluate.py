import torch

from scaleflow.evaluation.evaluate import straightness_per_row, heldout_loss_per_row
from scaleflow.flows import ICFM


def test_straight_trajectories_have_zero_straightness():
    start, end = torch.randn(6, 3), torch.randn(6, 3)
    line = [start + (i / 4) * (end - start) for i in range(5)]
    assert straightness_per_row(line).abs().max() < 1e-12


def test_bent_trajectory_deviation_is_its_mean_squared_offset():
    start, end = torch.zeros(1, 2), torch.tensor([[2.0, 0.0]])
    bent = [start, torch.tensor([[1.0, 1.0]]), end]  # the midpoint is 1 away from the chord
    # deviations per point: 0, mean(0^2, 1^2) = 0.5, 0 -> mean 1/6
    torch.testing.assert_close(straightness_per_row(bent), torch.tensor([1 / 6]))


def test_loss_of_the_exact_velocity_model_is_zero_and_baseline_is_the_target_variance():
    x1 = torch.randn(64, 4)

    class Oracle(torch.nn.Module):  # knows x1 of each row (batch order is kept)
        def forward(self, x, t):
            return x1

    losses, baseline = heldout_loss_per_row(Oracle(), ICFM(), x1, prediction="x1", seed=0, coupling_batch=256)
    assert losses.shape == (64,) and losses.max() == 0
    torch.testing.assert_close(torch.tensor(baseline), (x1 - x1.mean(0)).square().mean())
