"""The whitening behind `source: gaussian`: a Ledoit-Wolf covariance's symmetric inverse root and root."""
import numpy as np
import torch

from scaleflow.data.normalization import Standardizer, Whitener, normalization_from_tensors


def correlated(n=5000, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    root = rng.standard_normal((dim, dim)) + 2 * np.eye(dim)
    return rng.standard_normal((n, dim)) @ root.T + 3.0, root @ root.T


def test_whitened_rows_have_identity_covariance_and_come_back():
    x, covariance = correlated()
    w = Whitener.fit(x)
    z = w.transform(torch.as_tensor(x, dtype=torch.float64))
    assert torch.allclose(z.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-8)
    from sklearn.covariance import LedoitWolf

    shrunk = torch.as_tensor(LedoitWolf().fit(x).covariance_)
    assert torch.allclose(w.coloring @ w.coloring, shrunk, atol=1e-8)  # C^(1/2) squared is the shrunk covariance
    eye = torch.eye(6, dtype=torch.float64)
    assert torch.allclose(w.whitening @ shrunk @ w.whitening, eye, atol=1e-8)  # the fitted Gaussian becomes N(0, I)
    assert (torch.cov(z.T) - eye).abs().max() < 0.2  # and the rows nearly so (the shrinkage is the difference)
    assert torch.allclose(w.inverse_transform(z), torch.as_tensor(x), atol=1e-8)
    assert np.allclose(w.transform(x.astype(np.float32)), z.numpy(), atol=1e-4)  # numpy in, numpy out
    # log |det| of the inverse map: half the log-determinant of the fitted covariance
    assert abs(w.log_scale - 0.5 * np.linalg.slogdet(shrunk.numpy())[1]) < 1e-8
    assert torch.allclose(w.whitening @ w.coloring, torch.eye(6, dtype=torch.float64), atol=1e-10)


def test_saved_normalizations_load_as_what_they_are():
    x, _ = correlated(500)
    w = Whitener.fit(x)
    again = normalization_from_tensors(w.to_tensors())
    assert isinstance(again, Whitener) and torch.equal(again.whitening, w.whitening)
    s = Standardizer.fit(x)
    assert isinstance(normalization_from_tensors(s.to_tensors()), Standardizer)
    assert abs(s.log_scale - np.log(x.std(0)).sum()) < 1e-4
