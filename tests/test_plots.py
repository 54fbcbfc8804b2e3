"""PNG plots: the right files for the right results, real images, nothing for missing data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from analogdecorr import plots
from analogdecorr.config import resolve
from analogdecorr.errors import DataError
from analogdecorr.plots import plot_comparison, plot_results, run_label
from analogdecorr.results import Results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _results(tmp_path: Path, name: str = "run", *, rule: str = "np", decor: str = "scaled", epochs: int = 4,
             drift: list | None = None, corr_matrices: list | None = None, corr: bool = True,
             acc_scale: float = 1.0) -> Path:
    r = Results(resolve({}, {"rule": rule, "decor": decor}).to_dict(), {"python": "3"})
    for e in range(1, epochs + 1):
        r.add_epoch({
            "epoch": e, "train_loss": 2.0 / e, "train_acc": acc_scale * (0.3 + 0.1 * e), "test_loss": 2.2 / e,
            "test_acc": acc_scale * (0.25 + 0.1 * e), "corr_before": [0.3, 0.2] if corr else [],
            "corr_after": [0.1 / e, 0.05 / e] if corr else [], "seconds": 1.0,
            "update_cosine": float("nan") if e == 2 else 0.5,  # stored as null: a gap, not a crash
        })
    if drift is not None:
        r.extra["drift"] = drift
    if corr_matrices is not None:
        r.extra["corr_matrices"] = corr_matrices
    path = tmp_path / name / "results.json"
    r.save(path)
    return path


def _drift_rows(compensated=(True, False)) -> list[dict]:
    return [{"t_seconds": t, "acc": 0.9 - 0.02 * i - (0 if c else 0.1), "compensated": c}
            for c in compensated for i, t in enumerate([1, 3600, 86400, 2592000, 31536000])]


def _matrices(d: int = 6) -> list[dict]:
    rng = np.random.default_rng(0)
    before = np.corrcoef(rng.standard_normal((d, 50)) + rng.standard_normal(50))
    return [{"layer": 0, "before": before.tolist(), "after": np.eye(d).tolist()},
            {"layer": 1, "before": before[:4, :4].tolist(), "after": np.eye(4).tolist()}]


def _check_png(path: Path, min_size: tuple[int, int] = (300, 300)) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, path
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] >= min_size[0] and img.shape[1] >= min_size[1]
    assert img[..., :3].std() > 0.05  # not a blank canvas
    return img


def test_full_results_give_all_four_plots(tmp_path):
    path = _results(tmp_path, drift=_drift_rows(), corr_matrices=_matrices())
    out = tmp_path / "plots"
    written = plot_results(path, out)
    names = [plots.LEARNING_CURVES, plots.CORRELATION, plots.DRIFT, plots.CORR_MATRICES]
    assert [p.name for p in written] == names
    for p in written:
        assert p.parent == out
        _check_png(p)
    lc = _check_png(out / plots.LEARNING_CURVES)
    assert lc.shape[1] > lc.shape[0]  # two panels side by side
    mats = _check_png(out / plots.CORR_MATRICES)
    assert mats.shape[0] > 700  # one row of before/after images per layer (two layers)
    assert sorted(f.name for f in out.iterdir()) == sorted(p.name for p in written)  # no temp files left


def test_no_drift_plot_without_drift_and_no_matrices_without_matrices(tmp_path):
    path = _results(tmp_path)
    written = plot_results(path, path.parent)
    assert [p.name for p in written] == [plots.LEARNING_CURVES, plots.CORRELATION]
    assert not (path.parent / plots.DRIFT).exists() and not (path.parent / plots.CORR_MATRICES).exists()


@pytest.mark.parametrize("drift", [[], [{"t_seconds": 0, "acc": 0.5, "compensated": True}],
                                   [{"t_seconds": 10, "acc": None, "compensated": True}], "junk"])
def test_unusable_drift_gives_no_drift_plot(tmp_path, drift):
    path = _results(tmp_path, drift=drift)
    written = plot_results(path, tmp_path)
    assert plots.DRIFT not in [p.name for p in written] and not (tmp_path / plots.DRIFT).exists()


def test_drift_with_one_group(tmp_path):
    path = _results(tmp_path, drift=_drift_rows(compensated=(True,)))
    written = plot_results(path, tmp_path)
    assert tmp_path / plots.DRIFT in written
    _check_png(tmp_path / plots.DRIFT)


def test_no_correlation_panel_without_correlations(tmp_path):
    path = _results(tmp_path, corr=False, corr_matrices=[{"layer": 0, "before": [], "after": [[1.0]]}])
    written = plot_results(path, tmp_path)
    assert [p.name for p in written] == [plots.LEARNING_CURVES]


def test_no_epochs_no_plots(tmp_path):
    path = _results(tmp_path, epochs=0)
    assert plot_results(path, tmp_path / "p") == []
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_learning_curves_reflect_the_data(tmp_path):
    a = _results(tmp_path, "a")
    b = _results(tmp_path, "b", acc_scale=0.5)
    plot_results(a, tmp_path / "pa")
    plot_results(b, tmp_path / "pb")
    img_a = imread(tmp_path / "pa" / plots.LEARNING_CURVES)
    img_b = imread(tmp_path / "pb" / plots.LEARNING_CURVES)
    assert img_a.shape == img_b.shape and not np.array_equal(img_a, img_b)
    # the loss panels (left half) are the same data, so they match
    half = img_a.shape[1] // 2
    assert np.abs(img_a[:, : half - 20] - img_b[:, : half - 20]).mean() < np.abs(img_a - img_b).mean()


def test_missing_results_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="no results file"):
        plot_results(tmp_path / "nope" / "results.json", tmp_path)


# ------------------------------------------------------------------------------------------ comparison
def test_comparison_overlays_runs(tmp_path):
    paths = [_results(tmp_path, "np_scaled"), _results(tmp_path, "bp_none", rule="bp", decor="none"),
             _results(tmp_path, "np_scaled_2", acc_scale=0.8).parent]  # a run folder works too
    out = tmp_path / "cmp" / "comparison.png"
    assert plot_comparison(paths, out) == out
    _check_png(out)
    out2 = tmp_path / "cmp" / "loss.png"
    plot_comparison(paths, out2, metric="train_loss")
    assert not np.array_equal(imread(out), imread(out2))
    plot_comparison(paths[:1], tmp_path / "cmp" / "cos.png", metric="update_cosine")  # has a null entry
    _check_png(tmp_path / "cmp" / "cos.png")
    assert sorted(f.name for f in (tmp_path / "cmp").iterdir()) == ["comparison.png", "cos.png", "loss.png"]


def test_run_label():
    assert run_label({"config": {"rule": "np", "decor": "scaled"}}) == "np+scaled"
    assert run_label({"config": {}}) == "?+?"


def test_comparison_errors(tmp_path):
    path = _results(tmp_path)
    with pytest.raises(DataError, match=r"'test_accuracy'.*test_acc"):
        plot_comparison([path], tmp_path / "x.png", metric="test_accuracy")
    with pytest.raises(DataError, match="no results file"):
        plot_comparison([path, tmp_path / "missing.json"], tmp_path / "x.png")
    with pytest.raises(DataError, match="at least one"):
        plot_comparison([], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
