"""`mlp_dropout`: dropout in the MLP layers (never attention) of dit and mlp, in training only; no new weights."""
import pytest
import torch

from scaleflow.nets import count_parameters, create_model


@pytest.mark.parametrize("arch", ["dit", "mlp"])
def test_dropout_acts_in_training_only_and_adds_no_weights(arch):
    torch.manual_seed(0)
    plain = create_model(arch, "tiny", input_dim=16)
    dropped = create_model(arch, "tiny", input_dim=16, mlp_dropout=0.5)
    dropped.load_state_dict(plain.state_dict())  # the same keys and shapes
    assert count_parameters(plain) == count_parameters(dropped)
    for net in (plain, dropped):  # non-zero outputs (dit starts at exactly zero: AdaLN-Zero)
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.2)
    dropped.load_state_dict(plain.state_dict())
    x, t = torch.randn(8, 16), torch.rand(8)
    plain.eval(), dropped.eval()
    assert torch.equal(plain(x, t), dropped(x, t))  # evaluation: no dropout
    dropped.train()
    torch.manual_seed(1)
    first = dropped(x, t)
    torch.manual_seed(2)
    assert not torch.allclose(first, dropped(x, t))  # training: random masks
    with pytest.raises(ValueError, match="mlp_dropout"):
        create_model(arch, "tiny", input_dim=16, mlp_dropout=1.0)
