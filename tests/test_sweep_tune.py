"""Tuned sweeps ([tune]): each row chooses its setting on validation only (checked on hand-made results where
validation and test disagree, and on real runs), a stopped tune resumes without redoing runs, the final runs use
the choice, and a bad [tune] table is one line before any run."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from analogdecorr.cli import main
from analogdecorr.config import tomllib
from analogdecorr.errors import ConfigError
from analogdecorr.sweep import load_sweep, parse_sweep, run_sweep
from analogdecorr.sweep.engine import finished_status
from analogdecorr.sweep.tune import all_trials, tuned_rows, write_tuned_summary

TUNED = """
[sweep]
seeds = [0, 1]
baseline = { decor = "none" }

[base]
dataset = "digits"
hidden = [16]
epochs = 2
rule = "bp"

[grid]
decor = ["none", "whiten"]

[tune]
seeds = [5, 6]
rows = ["decor"]

[tune.search]
lr = [1e-4, 1e-3, 1e-2]
decor_lr = [1e-4, 1e-3]

[[exclude]]
decor = "none"
decor_lr = 1e-3
"""


def _spec(text: str = TUNED):
    return parse_sweep(tomllib.loads(text), source="sweep file t.toml")


# ------------------------------------------------------------------------------- choosing (no training)
def _fake(trial, val: list[float], test: list[float]) -> None:
    """A finished run on disk: one epoch row per value."""
    trial.out.mkdir(parents=True, exist_ok=True)
    epochs = [{"epoch": i + 1, "val_acc": v, "test_acc": t, "val_loss": 1.0, "test_loss": 1.0}
              for i, (v, t) in enumerate(zip(val, test, strict=True))]
    (trial.out / "results.json").write_text(json.dumps({"epochs": epochs}))


def test_the_choice_is_the_best_mean_validation_even_where_test_says_otherwise(tmp_path):
    spec = _spec()
    search = spec.trials(tmp_path)
    # whiten row: lr 1e-3/decor 1e-3 is best on validation (.80 mean), lr 1e-2/decor 1e-4 best on test
    scores = {("0.001", "0.001"): ((0.80, 0.80), 0.50), ("0.01", "0.0001"): ((0.79, 0.79), 0.95)}
    for t in search:
        s = dict(t.setting)
        val, test = scores.get((s["lr"], s["decor_lr"]), ((0.3, 0.3), 0.3)) if s["decor"] == "whiten" else (
            (0.3, 0.3), 0.3)
        # each run's figure is at its best-validation epoch (epoch 1 here), not its last
        _fake(t, [val[t.seed - 5], 0.1], [test, 0.99])
    rows = tuned_rows(spec, search)
    assert [dict(r.row) for r in rows] == [{"decor": "none"}, {"decor": "whiten"}]
    whiten = rows[1]
    assert whiten.complete
    assert dict(whiten.chosen.setting) == {"decor": "whiten", "lr": "0.001", "decor_lr": "0.001"}
    best_test = max(whiten.candidates, key=lambda c: statistics.fmean(c.figures.test_selected))
    assert best_test is not whiten.chosen and dict(best_test.setting)["lr"] == "0.01"
    # none row: every setting ties at .3: the first in search order (the smallest lr) wins
    assert dict(rows[0].chosen.setting) == {"decor": "none", "lr": "0.0001", "decor_lr": "0.0001"}
    # final runs at the choice, the sweep's seeds; nothing on disk for them yet
    _, _, finals = all_trials(spec, tmp_path)
    assert [(t.seed, t.config.lr, t.config.decor_lr, t.config.decor) for t in finals[2:]] == [
        (0, 1e-3, 1e-3, "whiten"), (1, 1e-3, 1e-3, "whiten")]
    write_tuned_summary(spec, tmp_path)
    md = (tmp_path / "summary.md").read_text()
    assert "| whiten | lr=0.001 decor_lr=0.001 | 0/2 |" in md
    chosen = tomllib.loads((tmp_path / "chosen.toml").read_text())
    assert chosen["row"][1]["chosen"] == {"lr": "0.001", "decor_lr": "0.001"}
    assert (chosen["row"][0]["chosen_text"], chosen["row"][1]["chosen_text"]) == (
        "lr=0.0001", "lr=0.001 decor_lr=0.001")  # none searched one decor lr: not named
    assert chosen["row"][1]["search_mean"] == pytest.approx(0.80) and "final_test_acc_mean" not in chosen["row"][1]
    assert chosen["row"][1]["config"] == {"dataset": "digits", "hidden": [16], "epochs": 2, "rule": "bp",
                                          "decor": "whiten", "lr": 1e-3, "decor_lr": 1e-3}


def test_a_row_chooses_only_when_its_search_is_complete_and_skips_diverged_settings(tmp_path):
    spec = _spec()
    search = spec.trials(tmp_path)
    whiten = [t for t in search if dict(t.setting)["decor"] == "whiten"]
    for t in whiten[:-1]:
        score = 0.9 if dict(t.setting)["lr"] == "0.01" else 0.5
        _fake(t, [score, score], [0.5, 0.5])
    row = tuned_rows(spec, whiten)[0]
    assert not row.complete and row.chosen is None
    write_tuned_summary(spec, tmp_path)
    assert f"searching: {len(whiten) - 1}/{len(whiten)} runs" in (tmp_path / "summary.md").read_text()
    # the last run (lr 1e-2, decor lr 1e-3) diverged: its setting is out, the other lr 1e-2 one wins
    whiten[-1].out.mkdir(parents=True)
    (whiten[-1].out / "diverged.json").write_text('{"error": "nan"}')
    row = tuned_rows(spec, whiten)[0]
    assert row.complete and dict(row.chosen.setting) == {"decor": "whiten", "lr": "0.01", "decor_lr": "0.0001"}
    write_tuned_summary(spec, tmp_path)
    search_md = (tmp_path / "search.md").read_text()
    assert "| whiten | 0.01 | 0.001 | 2/2 (1 diverged) | 0.900 | 0.500 | – |" in search_md
    assert "| whiten | 0.01 | 0.0001 | 2/2 | 0.900 ± 0.000 | 0.500 ± 0.000 | **yes** |" in search_md


# ---------------------------------------------------------------------------------------- on Ray
@pytest.fixture(scope="module")
def tuned_sweep(tmp_path_factory):
    """The tuned sweep, stopped after 5 runs and started again: (spec, out, finished before, report)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    root = tmp_path_factory.mktemp("tuned")
    (root / "t.toml").write_text(TUNED)
    spec = load_sweep(root / "t.toml")
    out = root / "out"
    seen = []

    def stop_after_five(outcome) -> None:
        seen.append(outcome)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, jobs=2, progress=False, on_outcome=stop_after_five)
    search = spec.trials(out)
    before = {t.key: (t.out / "results.json").stat().st_mtime_ns for t in search if finished_status(t)}
    trials, report = run_sweep(spec, out, jobs=2, progress=False)
    yield spec, out, before, trials, report
    ray.shutdown()


def test_a_stopped_tune_resumes_without_redoing_runs_and_runs_the_finals_in_the_same_call(tuned_sweep):
    spec, out, before, trials, report = tuned_sweep
    search = spec.trials(out)
    assert len(search) == 2 * 3 + 2 * 6 and 5 <= len(before) < len(search)
    by_key = {o.trial.key: o for o in report.outcomes}
    assert {k for k, o in by_key.items() if o.how == "before"} == set(before)
    assert {k: (out / "runs" / k / "results.json").stat().st_mtime_ns for k in before} == before
    # the finals (2 rows × 2 seeds) ran in the second call, after their row's search
    finals = [t for t in trials if t.seed in (0, 1)]
    assert len(trials) == len(search) + 4 and len(finals) == 4
    assert all(by_key[t.key].how == "new" and by_key[t.key].status == "done" for t in finals)
    _, again = run_sweep(spec, out, jobs=2, progress=False)
    assert again.count(how="before") == len(search) + 4


def test_final_runs_use_the_setting_best_on_validation_of_the_search_runs(tuned_sweep):
    spec, out, _, trials, _ = tuned_sweep
    chosen = tomllib.loads((out / "chosen.toml").read_text())["row"]
    md = (out / "summary.md").read_text()
    for decor, entry in zip(("none", "whiten"), chosen, strict=True):
        # recompute the choice from the search runs' results.json: mean val_acc at each run's best-val epoch
        means: dict[tuple, list[float]] = {}
        for run in (out / "runs").iterdir():
            res = json.loads((run / "results.json").read_text())
            cfg = res["config"]
            if cfg["decor"] == decor and cfg["seed"] in (5, 6):
                means.setdefault((cfg["lr"], cfg["decor_lr"]), []).append(res["summary"]["best_val_acc"])
        best = max(statistics.fmean(v) for v in means.values())
        first_best = next(k for k in sorted(means, key=lambda k: (k[0], k[1]))
                          if statistics.fmean(means[k]) == pytest.approx(best, abs=1e-12))
        assert (float(entry["chosen"]["lr"]), float(entry["chosen"]["decor_lr"])) == first_best
        assert entry["search_mean"] == pytest.approx(best)
        finals = [t for t in trials if t.seed in (0, 1) and t.config.decor == decor]
        for t in finals:
            cfg = json.loads((t.out / "results.json").read_text())["config"]
            assert (cfg["lr"], cfg["decor_lr"], cfg["seed"]) == (*first_best, t.seed)
        text = f"lr={entry['chosen']['lr']}" + (f" decor_lr={entry['chosen']['decor_lr']}" if decor != "none" else "")
        assert f"| {decor} | {text} | 2/2 |" in md  # none searched one decor lr: the table does not name it
        assert entry["final_done"] == 2 and 0 <= entry["final_test_acc_mean"] <= 1
    assert "search.md" in md and (out / "search.csv").read_text().count("\n") == 1 + 3 + 6
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------------------------- the [tune] table
@pytest.mark.parametrize("edit, message", [
    (('rows = ["decor"]', 'rows = ["decor"]\nmetric = "test_acc"'),
     r"\[tune\] metric = 'test_acc' would choose settings on the test set; tune on validation"),
    (('rows = ["decor"]', 'rows = ["decro"]'),
     r"\[tune\] rows names 'decro', which is not a \[grid\] axis \(did you mean 'decor'\?\)"),
    (('rows = ["decor"]', 'rows = ["lr"]'), r"rows names 'lr', which is not a \[grid\] axis \(it is searched"),
    (('seeds = [5, 6]', 'sedes = [5, 6]'), r"unknown key 'sedes' in \[tune\] \(did you mean 'seeds'\?\)"),
    (('lr = [1e-4', 'lrr = [1e-4'), r"unknown config key 'lrr' in \[tune.search\] \(did you mean 'lr'\?\)"),
    (('[tune.search]\nlr', '[tune.search]\ndecor = ["none"]\nlr'), r"'decor' is both a \[grid\] and a \[tune"),
    (('baseline = { decor = "none" }', 'baseline = { lr = 1e-3 }'), r"baseline names 'lr', which is not swept"),
    (('[grid]\ndecor = ["none", "whiten"]', '[grid]\ndecor = ["none", "whiten"]\nsigma = [0.1]'),
     None),  # fine: a grid axis that is not a row is searched
])
def test_a_bad_tune_table_is_one_line_naming_the_key(tmp_path, capsys, edit, message):
    path = tmp_path / "t.toml"
    path.write_text(TUNED.replace(*edit))
    if message is None:
        spec = load_sweep(path)
        assert spec.search_axes == ["sigma", "lr", "decor_lr"]
        return
    with pytest.raises(ConfigError, match=message):
        load_sweep(path)
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sweep file") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_an_invalid_searched_value_names_the_row_and_value_before_any_run(tmp_path, capsys):
    path = tmp_path / "t.toml"
    path.write_text(TUNED.replace("decor_lr = [1e-4, 1e-3]", "decor_lr = [1e-4, -1e-3]")
                    .replace("decor_lr = 1e-3", "decor_lr = -1e-3"))
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "search decor=whiten lr=0.0001 decor_lr=-0.001 seed=5: decor_lr=-0.001 must be" in err
    assert err.count("\n") == 1 and not (tmp_path / "o" / "runs").exists()


def test_the_tuned_study_file_expands(tmp_path):
    spec = load_sweep(Path(__file__).resolve().parents[1] / "sims" / "correlated_tuned.toml")
    search = spec.trials(tmp_path)
    assert spec.row_axes == ["hardware", "decor"] and spec.search_axes == ["lr", "decor_lr", "zca_eps"]
    # none and centre search 4 lrs (3 on ConstantStep), the zca oracle those x 2 eigenvalue floors, each
    # decorrelation rule those x 2 decor lrs; 2 seeds
    assert len(search) == (2 * (2 * 4 + 4 * 2 + 3 * 8) + (2 * 3 + 3 * 2 + 3 * 6)) * 2
    assert {t.seed for t in search} == {100, 101}
    assert {t.config.zca_eps for t in search if t.config.decor == "zca"} == {1e-3, 0.1}
    assert {t.config.zca_eps for t in search if t.config.decor != "zca"} == {1e-3}
    assert {(t.config.backend, t.config.preset) for t in search} == {
        ("float", "IdealizedPreset"), ("analog", "FloatingPointPreset"), ("analog", "ConstantStep")}
    assert {(t.config.rho, t.config.n_features, t.config.hidden, t.config.epochs, t.config.rule)
            for t in search} == {(0.9, 64, (100,), 30, "np")}
