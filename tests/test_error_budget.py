"""sims/error_budget: the sweep file expands to the study's 108 runs with the unit's format per width, the flags
narrow it through the sweep checks, and the table/CSV/plot writer reads synthetic results.json files (no training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from script_module import load_script

from analogdecorr.cosim.unit import plan
from analogdecorr.sweep import load_sweep
from analogdecorr.sweep.spec import RESULTS

SIMS = Path(__file__).resolve().parents[1] / "sims"


def _script():
    return load_script("sims/error_budget.py")


def test_the_sweep_file_expands_to_every_device_width_and_seed(tmp_path):
    trials = load_sweep(SIMS / "error_budget.toml").trials(tmp_path)
    assert len(trials) == 2 * 3 * 6 * 3
    fixed = [t for t in trials if t.config.decor_numerics == "fixed"]
    assert sorted({t.config.unit_width for t in fixed}) == [8, 10, 12, 14, 16]
    assert {(t.config.rule, t.config.decor, t.config.cosim_record, t.config.drift_times) for t in trials} == {
        ("np", "offdiag", 0, ())}
    assert {t.config.preset for t in trials if t.config.backend == "analog"} == {"EcRamPreset", "ConstantStep"}
    assert {t.config.backend for t in trials} == {"float", "analog"}
    fmt = {t.config.unit_width: plan(t.config).fields for t in fixed}
    assert {w: f["frac"] for w, f in fmt.items()} == {8: 4, 10: 6, 12: 8, 14: 10, 16: 12}  # F = W - 4
    # R's fraction follows the update size (F_R = s + 8), not W: R keeps W - F = 4 integer bits at every W
    assert {(f["shift"], f["r_frac"], f["r_width"]) for f in fmt.values()} == {(18, 26, 30)}
    # every setting has its float-decorrelation twin: same configuration but for the numerics
    keys = {t.key for t in trials}
    assert len(keys) == len(trials)


def test_flags_narrow_the_study_and_refuse_unknown_widths(tmp_path):
    eb = _script()
    spec = eb.build_spec(eb.parse_args(["--tasks", "digits", "--widths", "8", "16", "--seeds", "1",
                                        "--epochs", "1", "--hardware", "float", "ecram"]))
    trials = spec.trials(tmp_path)
    assert sorted((dict(t.setting)["hardware"], dict(t.setting)["numerics"]) for t in trials) == [
        ("ecram", "float"), ("ecram", "w16"), ("ecram", "w8"), ("float", "float"), ("float", "w16"),
        ("float", "w8")]
    assert {t.config.epochs for t in trials} == {1}
    with pytest.raises(SystemExit, match="unknown width 9; choose from 8, 10, 12, 14, 16"):
        eb.build_spec(eb.parse_args(["--widths", "9"]))


def _fake_results(trial, acc_sel: float, acc_last: float, z: float | None) -> None:
    rows = []
    for epoch in (1, 2):
        row = {"epoch": epoch, "test_acc": acc_last if epoch == 2 else acc_sel, "val_acc": 0.5}
        if z is not None:
            row["cosim"] = [{"layer": 0, "samples": 100, "learned": 100, "z_rel_dist": z, "r_rel_dist": z / 10,
                             "saturation": {"x": epoch, "z": 0, "v": 0, "r": 3, "xc": 0, "rw": 0, "p": 0, "e": 0},
                             "scale": 1.0}]
        rows.append(row)
    trial.out.mkdir(parents=True)
    summary = {"best_val_epoch": 1, "test_acc_at_best_val": acc_sel, "best_val_acc": 0.5}
    (trial.out / RESULTS).write_text(json.dumps({"epochs": rows, "summary": summary}))


def test_table_csv_and_plot_from_synthetic_results(tmp_path):
    eb = _script()
    spec = eb.build_spec(eb.parse_args(["--tasks", "digits", "--hardware", "float", "ecram", "--widths", "8", "12",
                                        "16", "--seeds", "2", "--epochs", "2"]))
    trials = spec.trials(tmp_path)
    # float backend: W 8 is 5 points short, W 12 within 1 point (validation-selected); ecram: no width is close
    # enough on the selected epoch, W 16 is on the last epoch
    acc = {("float", "float"): (0.90, 0.88), ("float", "w8"): (0.85, 0.80), ("float", "w12"): (0.895, 0.85),
           ("float", "w16"): (0.90, 0.88), ("ecram", "float"): (0.80, 0.70), ("ecram", "w8"): (0.70, 0.60),
           ("ecram", "w12"): (0.75, 0.65), ("ecram", "w16"): (0.78, 0.695)}
    zdist = {"w8": 0.5, "w12": 0.1, "w16": 0.02}
    for t in trials:
        s = dict(t.setting)
        sel, last = acc[s["hardware"], s["numerics"]]
        _fake_results(t, sel + 0.002 * t.seed, last + 0.002 * t.seed, zdist.get(s["numerics"]))
    text = eb.write_table(spec, trials, tmp_path)
    assert "| digits | float | 12 | 16 |" in text  # last: W 12 is 3 points short, W 16 is level
    assert "| digits | ecram | > 16 | 16 |" in text
    assert "| float | w8 | 2 | 0.851 ± 0.001 | 0.801 ± 0.001 | 0.500 | 0.050 | 3 | 0 | 0 | 6 |" in text
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert len(rows) == 8
    w8 = next(r for r in rows if r["hardware"] == "ecram" and r["numerics"] == "w8")
    assert (w8["W"], float(w8["test_at_best_val_mean"]), float(w8["sat_x"]), float(w8["samples"])) == (
        "8", pytest.approx(0.701), 3.0, 200.0)
    ref = next(r for r in rows if r["hardware"] == "ecram" and r["numerics"] == "float")
    assert ref["W"] == "" and ref["z_rel_dist"] == "" and ref["sat_x"] == ""
    png = eb.plot(spec, trials, tmp_path)
    assert png == tmp_path / "plots" / "error_budget.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unfinished_runs_leave_their_rows_out(tmp_path):
    eb = _script()
    spec = eb.build_spec(eb.parse_args(["--tasks", "digits", "--hardware", "ecram", "--widths", "8", "--seeds",
                                        "1", "--epochs", "2"]))
    trials = spec.trials(tmp_path)
    _fake_results(next(t for t in trials if dict(t.setting)["numerics"] == "w8"), 0.7, 0.7, 0.3)
    text = eb.write_table(spec, trials, tmp_path)
    assert "| ecram | w8 |" in text and "| ecram | float |" not in text
    assert "| digits | ecram | – | – |" in text  # no float reference yet: no verdict
    assert eb.plot(spec, trials, tmp_path / "p") is not None


def test_the_smallest_width_must_hold_for_every_wider_width():
    eb = _script()
    recs = {("t", "d", "float"): {"sel": [0.90]}, ("t", "d", "w8"): {"sel": [0.90]}, ("t", "d", "w10"): {"sel": [0.85]},
            ("t", "d", "w12"): {"sel": [0.895]}, ("t", "d", "w14"): {"sel": [0.91]}}
    widths = ["float", "w8", "w10", "w12", "w14"]
    assert eb.smallest_width(recs, "t", "d", widths) == 12  # W 8 alone is level, but W 10 is 5 points short
    recs["t", "d", "w14"] = {"sel": [0.88]}
    assert eb.smallest_width(recs, "t", "d", widths) is None
    assert eb.smallest_width({}, "t", "d", widths) is None
