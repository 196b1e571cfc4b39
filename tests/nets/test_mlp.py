import torch
from torch import nn

from scaleflow.nets.mlp import JoinedInputLinear


def test_joined_input_linear_is_linear_on_the_joined_input():
    torch.manual_seed(0)
    reference = nn.Linear(12 + 5, 7)
    torch.manual_seed(0)
    layer = JoinedInputLinear(12, 5, 7)
    # the same draws as nn.Linear's initialization, split into the x and c blocks
    assert torch.equal(torch.cat([layer.weight_x, layer.weight_c], dim=1), reference.weight)
    assert torch.equal(layer.bias, reference.bias)
    x, c = torch.randn(4, 12, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    layer.double(), reference.double()
    torch.testing.assert_close(layer(x, c), reference(torch.cat([x, c], dim=1)), rtol=0, atol=1e-12)


def test_joined_input_linear_gradients_match_the_joined_layer():
    torch.manual_seed(0)
    layer = JoinedInputLinear(6, 3, 4).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    c = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.cat([layer.weight_x, layer.weight_c], dim=1).detach().requires_grad_()
    joined_c = c.detach().clone().requires_grad_()
    (torch.nn.functional.linear(torch.cat([x, joined_c], 1), weight, layer.bias.detach()) ** 2).sum().backward()
    (layer(x, c) ** 2).sum().backward()
    torch.testing.assert_close(torch.cat([layer.weight_x.grad, layer.weight_c.grad], 1), weight.grad)
    torch.testing.assert_close(c.grad, joined_c.grad)
