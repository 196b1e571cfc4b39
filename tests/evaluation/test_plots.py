import matplotlib.image as mpimg
import numpy as np
import pytest

from scaleflow.evaluation import plots
from scaleflow.evaluation.plots import (DPI, metric_names, plot_embedding_map, plot_metric_bars, plot_quality_vs_nfe,
                                        plot_training_curves, project_2d)

# As evaluate.METRICS (kept literal here so these tests do not import the evaluation pipeline).
METRICS = ("val_loss", "reconstruction_mse", "fd", "mmd", "precision", "recall", "density", "coverage",
           "memorization", "diversity", "validity", "nearest_cosine", "straightness")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path, width_in, height_in):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = mpimg.imread(path)
    assert image.shape[:2] == (round(height_in * DPI), round(width_in * DPI))
    assert image[..., :3].std() > 0  # something was drawn
    assert not list(path.parent.glob("*.tmp"))  # written atomically


def _records(scale):
    train = [{"step": s, "loss": scale / s, "grad_norm": 1.0, "lr": 1e-3, "steps_per_s": 50.0} for s in range(5, 105, 5)]
    val = [{"step": s, "val_loss": 1.2 * scale / s, "val_loss_raw": 1.3 * scale / s} for s in range(10, 110, 10)]
    return train + val


def _report(seed, floors=True):
    rng = np.random.default_rng(seed)
    report = {}
    for name in METRICS:
        value = float(rng.uniform(0.1, 1))
        floor = value / 2 if floors and name not in ("val_loss", "straightness") else None
        report[name] = {"value": value, "ci": [value * 0.9, value * 1.1], "floor": floor,
                        "floor_ci": None if floor is None else [floor * 0.8, floor * 1.2]}
    report["nfe_curve"] = [{"solver": solver, "steps": s, "nfe": s * k, "fd": 10.0 / s, "seconds": 0.01}
                           for solver, k in (("euler", 1), ("heun", 2)) for s in (1, 2, 4, 8)]
    report["nfe_curve"].append({"solver": "dopri5", "steps": None, "nfe": 38, "fd": 0.9, "seconds": 0.1})
    return report


def test_metric_names_follow_report_order_and_skip_non_metrics():
    report = _report(0)
    report["stats"], report["settings"] = {"generated_vs_test": {}}, {"seed": 0}
    assert metric_names([report]) == list(METRICS)
    assert metric_names([{"fd": {"value": 1.0}}, {"mmd": {"value": 2.0}, "fd": {"value": 3.0}}]) == ["fd", "mmd"]


def test_training_curves(tmp_path):
    path = plot_training_curves({"a": _records(1.0), "b": _records(2.0)}, tmp_path / "curves.png")
    _check_png(path, 11, 4)


def test_training_curves_with_only_train_records(tmp_path):
    records = [r for r in _records(1.0) if "loss" in r]
    _check_png(plot_training_curves({"a": records}, tmp_path / "curves.png"), 11, 4)


def test_metric_bars_with_null_floors_and_missing_metrics(tmp_path):
    partial = _report(1, floors=False)
    del partial["mmd"]
    partial["fd"]["value"] = float("nan")
    path = plot_metric_bars({"a": _report(0), "b": partial}, tmp_path / "sub" / "metrics.png")
    _check_png(path, 12, 2.4 * 4)  # 13 metrics in 4 columns -> 4 rows


def test_metric_bars_ci_not_containing_value(tmp_path):
    report = _report(0)
    report["fd"]["ci"] = [report["fd"]["value"] * 1.1, report["fd"]["value"] * 1.2]  # must not raise
    _check_png(plot_metric_bars({"a": report}, tmp_path / "metrics.png"), 12, 9.6)


def test_metric_bars_draw_fd_excess_and_fd_inf_panels(tmp_path, monkeypatch):
    report = _report(0)
    report["fd"].update(excess=40.0, excess_ci=[35.0, 45.0], fd_inf=30.0, floor_inf=0.5)
    titles = []
    real_save = plots.save_figure

    def spy(fig, path):
        titles.extend(ax.get_title() for ax in fig.axes if ax.axison)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "save_figure", spy)
    old = _report(1)  # an older report without the FD rows still gets its bars
    _check_png(plot_metric_bars({"new": report, "old": old}, tmp_path / "metrics.png"), 12, 9.6)  # 15 panels
    assert titles == [*METRICS[:3], "fd_excess", "fd_inf", *METRICS[3:]]


def test_quality_vs_nfe(tmp_path):
    no_curve = {**_report(2), "nfe_curve": []}
    path = plot_quality_vs_nfe({"a": _report(0), "b": _report(1), "c": no_curve}, tmp_path / "nfe.png")
    _check_png(path, 7, 4.5)


def test_embedding_map_tsne(tmp_path):
    rng = np.random.default_rng(0)
    real = rng.standard_normal((60, 8))
    generated = {"a": rng.standard_normal((40, 8)) + 2, "real": rng.standard_normal((30, 8))}  # a run named "real"
    path = plot_embedding_map(real, generated, tmp_path / "map.png", method="tsne")
    _check_png(path, 7, 6.5)


def test_embedding_map_subsamples_and_falls_back_without_umap(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "umap_available", lambda: False)
    seen = {}

    def spy(points, method, seed):
        seen["n"], seen["method"] = len(points), method
        return project_2d(points, method, seed)

    monkeypatch.setattr(plots, "project_2d", spy)
    rng = np.random.default_rng(0)
    path = plot_embedding_map(rng.standard_normal((80, 64)), {"a": rng.standard_normal((30, 64))},
                              tmp_path / "map.png", method="umap", max_points=50)
    _check_png(path, 7, 6.5)
    assert seen == {"n": 50 + 30, "method": "umap"}


def test_project_2d_method_names(monkeypatch):
    monkeypatch.setattr(plots, "umap_available", lambda: False)
    x = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
    for method in ("auto", "tsne", "umap"):
        coords, used = project_2d(x, method)
        assert coords.shape == (40, 2) and np.isfinite(coords).all() and used == "t-SNE"
    with pytest.raises(ValueError, match="pca"):
        project_2d(x, "pca")


def test_embedding_map_rejects_mixed_dimensions(tmp_path):
    with pytest.raises(ValueError, match="one D"):
        plot_embedding_map(np.zeros((10, 4)), {"a": np.zeros((10, 5))}, tmp_path / "map.png")
