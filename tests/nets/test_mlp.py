import torch
from torch import nn

from scaleflow.nets.mlp import JoinedInputLinear, MLPVelocityNetwork


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


def _joined_layout_network(model: MLPVelocityNetwork) -> nn.Sequential:
    """The design notes' SimpleMLP, built here independently of `model.net`: Linear(D + h, h) on
    [x, c], SiLU, (L - 2) x [Linear(h, h), SiLU], Linear(h, D), holding `model`'s weights."""
    layer = model.input_layer
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    first = nn.Linear(layer.weight_x.shape[1] + layer.weight_c.shape[1], layer.bias.shape[0], dtype=layer.bias.dtype)
    with torch.no_grad():
        first.weight.copy_(torch.cat([layer.weight_x, layer.weight_c], dim=1))
        first.bias.copy_(layer.bias)
    modules: list[nn.Module] = [first, nn.SiLU()]
    for hidden in linears[:-1]:
        modules += [hidden, nn.SiLU()]
    return nn.Sequential(*modules, linears[-1])


def test_mlp_is_the_joined_layout_network():
    torch.manual_seed(0)
    model = MLPVelocityNetwork(input_dim=10, hidden_dim=16, num_layers=4, time_embed_dim=8).double()
    for p in model.parameters():  # make the zero-initialized output layer count
        nn.init.normal_(p, std=0.3)
    old = _joined_layout_network(model)
    x, t = torch.randn(5, 10, dtype=torch.float64), torch.rand(5, dtype=torch.float64)
    expected = old(torch.cat([x, model.time_embed(t)], dim=1))
    torch.testing.assert_close(model(x, t), expected, rtol=0, atol=1e-12)


def test_weights_saved_in_the_joined_layout_still_load():
    torch.manual_seed(0)
    model = MLPVelocityNetwork(input_dim=10, hidden_dim=16, num_layers=4, time_embed_dim=8)
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    old_state = {f"net.{k}": v for k, v in _joined_layout_network(model).state_dict().items()}
    old_state.update({k: v for k, v in model.state_dict().items() if k.startswith("time_embed.")})
    assert "net.0.weight" in old_state and "net.6.weight" in old_state  # Linear, SiLU, ..., Linear(h, D)
    fresh = MLPVelocityNetwork(input_dim=10, hidden_dim=16, num_layers=4, time_embed_dim=8)
    fresh.load_state_dict(old_state)
    x, t = torch.randn(5, 10), torch.rand(5)
    assert torch.equal(fresh(x, t), model(x, t))
