"""The sweep summary's significance column, on hand-made rows (no runs): Welch's two-sided t-test against the
best setting or the sweep file's baseline, with numbers small enough to check by hand."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from analogdecorr.errors import ConfigError
from analogdecorr.sweep import parse_sweep
from analogdecorr.sweep.summary import SettingRow, csv_text, markdown, p_values, welch_p

# Two seeds a side with equal variances: Welch's df is 2, where the t distribution has a closed form,
# P(|T| > t) = 1 - t / sqrt(2 + t²). a = [0, 2], b = [4, 6]: means 1 and 5, variances 2 and 2,
# t = 4 / sqrt(2/2 + 2/2) = 2·sqrt(2), so p = 1 - sqrt(8 / 10).
P_TWO_SEEDS = 1 - math.sqrt(0.8)


def _spec(baseline: str = "", lrs: str = "[0.1]"):
    text = {"grid": {"variant": {"A": {"decor": "none"}, "B": {"decor": "whiten"}, "C": {"decor": "centre"}},
                     "lr": eval(lrs)},
            "base": {"dataset": "digits", "hidden": [8]}, "sweep": {"seeds": [0, 1]}}
    if baseline:
        text["sweep"]["baseline"] = {"variant": baseline}
    return parse_sweep(text)


def _row(variant: str, lr: float, metric: list[float]) -> SettingRow:
    return SettingRow((("variant", variant), ("lr", f"{lr:g}")), {}, seeds=len(metric), done=len(metric),
                      metric=metric, test_selected=metric, test_last=metric, epoch=[1] * len(metric))


def test_welch_p_matches_the_closed_form_and_is_symmetric():
    assert welch_p([0, 2], [4, 6]) == pytest.approx(P_TWO_SEEDS, rel=1e-12)
    assert welch_p([4, 6], [0, 2]) == pytest.approx(P_TWO_SEEDS, rel=1e-12)
    # unequal variances (Welch, not Student): a = [0, 2] (var 2), b = [4, 8] (var 8): t = 5 / sqrt(5),
    # df = 25 / (1 + 16) = 25/17; only the df-2 case is closed-form, so check against Student's instead:
    assert welch_p([0, 2], [4, 8]) > welch_p([0, 2, 0, 2], [4, 8, 4, 8])


@pytest.mark.parametrize("a, b", [([1.0], [2.0, 3.0]), ([1.0, 2.0], [3.0]), ([1.0, 1.0], [2.0, 2.0]),
                                  ([1.0, math.nan], [2.0, 3.0])])
def test_welch_p_is_undefined_with_fewer_than_two_seeds_or_no_variance(a, b):
    assert math.isnan(welch_p(a, b))


def test_p_column_tests_every_row_against_the_best_setting():
    spec = _spec()
    rows = [_row("A", 0.1, [0, 2]), _row("B", 0.1, [4, 6]), _row("C", 0.1, [3])]
    ps = p_values(spec, rows)
    assert ps[0] == pytest.approx(P_TWO_SEEDS) and math.isnan(ps[1]) and math.isnan(ps[2])
    md = markdown(spec, rows)
    assert "| p |" in md and "the best setting (*)" in md
    line_a = next(line for line in md.splitlines() if line.startswith("| A "))
    line_b = next(line for line in md.splitlines() if line.startswith("| B "))
    assert "| 1.000 ± 1.414 | 0.106 |" in line_a
    assert "| 5.000 ± 1.414 * | – |" in line_b
    table = list(csv.DictReader(io.StringIO(csv_text(spec, rows))))
    assert float(table[0]["p"]) == pytest.approx(P_TWO_SEEDS, rel=1e-5) and table[1]["p"] == ""


def test_a_baseline_is_matched_on_its_axes_and_the_row_keeps_its_others():
    spec = _spec(baseline="A", lrs="[0.1, 0.3]")
    rows = [_row("A", 0.1, [0, 2]), _row("A", 0.3, [10, 12]), _row("B", 0.1, [4, 6]), _row("B", 0.3, [14, 16]),
            _row("C", 0.1, [0, 2]), _row("C", 0.3, [0, 2])]
    ps = p_values(spec, rows)
    assert math.isnan(ps[0]) and math.isnan(ps[1])  # the baselines themselves
    assert ps[2] == pytest.approx(P_TWO_SEEDS) and ps[3] == pytest.approx(P_TWO_SEEDS)  # B vs A at its own lr
    assert ps[4] == pytest.approx(1.0)  # C = A at lr 0.1
    # C at 0.3 against A at 0.3: means 1 and 11, variances 2 and 2, t = 10 / sqrt(2) = 5·sqrt(2), df 2
    assert ps[5] == pytest.approx(1 - math.sqrt(50 / 52))
    assert "against the baseline variant=A with the row's other settings" in markdown(spec, rows)


@pytest.mark.parametrize("baseline, message", [
    ({"varient": "A"},
     "[sweep] baseline names 'varient', which is not swept (did you mean 'variant'?); choose from variant"),
    ({"variant": "D"}, "[sweep] baseline variant = 'D' is not one of its values (A, B, C)"),
    ({"variant": ["A", "B"]}, "[sweep] baseline variant must be one value"),
    ("A", "[sweep] baseline must be a table of axis = value"),
])
def test_a_bad_baseline_is_one_error_naming_it(baseline, message):
    data = {"base": {"dataset": "digits"}, "sweep": {"baseline": baseline},
            "grid": {"variant": {"A": {"decor": "none"}, "B": {"decor": "whiten"}, "C": {"decor": "centre"}}}}
    with pytest.raises(ConfigError) as e:
        parse_sweep(data)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_baseline_dropped_by_an_exclude_is_an_error():
    data = {"base": {"dataset": "digits"}, "sweep": {"baseline": {"variant": "A"}}, "exclude": [{"variant": "A"}],
            "grid": {"variant": {"A": {"decor": "none"}, "B": {"decor": "whiten"}}}}
    with pytest.raises(ConfigError, match="matches no setting"):
        parse_sweep(data)


def test_val_best_minus_last_is_each_seeds_fall_from_its_best_validation_epoch_to_its_last(tmp_path):
    """add_run reads the best and the last validation accuracy of every run, whatever epoch the sweep selects;
    the table and the CSV report the per-seed difference (0 for a run that ends at its best), mean ± std."""
    from types import SimpleNamespace

    from analogdecorr.sweep.summary import add_run

    last = parse_sweep({"base": {"dataset": "digits"}, "sweep": {"seeds": [0, 1], "select": "last"},
                        "grid": {"lr": [0.1]}})
    for spec, select in ((_spec(), "validation"), (last, "last")):
        row = SettingRow((("variant", "A"), ("lr", "0.1")), {})
        for seed, vals in enumerate(([0.2, 0.5, 0.4], [0.1, 0.3, 0.3])):  # seed 0 falls .1, seed 1 ends at its best
            out = tmp_path / select / f"s{seed}"
            out.mkdir(parents=True)
            epochs = [{"epoch": i + 1, "val_acc": v, "test_acc": v} for i, v in enumerate(vals)]
            (out / "results.json").write_text(json.dumps({"epochs": epochs}))
            add_run(row, SimpleNamespace(out=out, config=SimpleNamespace(epochs=3)), select, "val_acc")
        assert row.metric == ([0.5, 0.3] if select == "validation" else [0.4, 0.3])
        assert row.gap == pytest.approx([0.1, 0.0])
        md = markdown(spec, [row])
        head = next(line for line in md.splitlines() if line.startswith("| variant") or line.startswith("| lr"))
        line = next(line for line in md.splitlines() if line.startswith("| A ") or line.startswith("| 0.1 "))
        column = [c.strip() for c in head.strip("|").split("|")].index("val best − last")
        assert [c.strip() for c in line.strip("|").split("|")][column] == "0.050 ± 0.071"
        table = next(csv.DictReader(io.StringIO(csv_text(spec, [row]))))
        assert float(table["val_best_minus_last_mean"]) == pytest.approx(0.05)


def _add_seeds(tmp_path, row: SettingRow, name: str, best: list[dict], last: dict | None = None) -> None:
    """One hand-written results.json per entry of ``best`` (the per-layer lists at the best-validation epoch 2
    of 3; ``last`` at epoch 3, which the summary must not read), each counted in ``row``."""
    from types import SimpleNamespace

    from analogdecorr.sweep.summary import add_run

    for seed, layers in enumerate(best):
        out = tmp_path / f"{name}{seed}"
        out.mkdir()
        epochs = [{"epoch": e, "val_acc": acc, "test_acc": acc} for e, acc in ((1, 0.2), (2, 0.6), (3, 0.4))]
        epochs[1].update(layers)
        epochs[2].update(last or {})
        (out / "results.json").write_text(json.dumps({"epochs": epochs}))
        add_run(row, SimpleNamespace(out=out, config=SimpleNamespace(epochs=3)), "validation", "val_acc")


def _table(md: str) -> tuple[list[str], dict[str, list[str]]]:
    """summary.md's header cells and, per variant, its row's cells."""
    lines = md.splitlines()
    split = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    return split[0], {cells[0]: cells for cells in split[1:]}


def test_cond_column_is_the_median_over_seeds_of_the_first_and_last_layer_at_the_selected_epoch(tmp_path):
    """The default diagnostic column `cond ⟨zzᵀ⟩ L0 / last`: per seed results.json's zz_cond at the
    best-validation epoch (not the last), first and last layer (not a middle one), then the median over the seeds
    (not the mean); a row whose runs did not record zz_cond shows –, and a sweep where none did has no such
    column."""
    from analogdecorr.sweep.summary import DIAGNOSTIC_BY_KEY

    cond = DIAGNOSTIC_BY_KEY["zz_cond"].column
    spec = _spec()
    rows = [SettingRow((("variant", v), ("lr", "0.1")), {}) for v in ("A", "B")]
    firsts, lasts = [10.0, 2.0, 3.0], [400.0, 100.0, 1e6]
    _add_seeds(tmp_path, rows[0], "s", [{"zz_cond": [f, 7.0, la]} for f, la in zip(firsts, lasts, strict=True)],
               last={"zz_cond": [99.0, 99.0, 99.0]})
    _add_seeds(tmp_path, rows[1], "plain", [{}] * 3)
    header, cells = _table(markdown(spec, rows))
    assert header[-2:] == ["settings", cond]  # appended after every existing column
    assert cells["A"][-1] == "3 / 400" and cells["B"][-1] == "–"
    table = list(csv.DictReader(io.StringIO(csv_text(spec, rows))))
    assert float(table[0]["zz_cond_first_median"]) == 3.0 and float(table[0]["zz_cond_last_median"]) == 400.0
    assert table[1]["zz_cond_first_median"] == ""
    assert cond not in markdown(spec, rows[1:]) and "zz_cond" not in csv_text(spec, rows[1:])


# Per-layer figures of three seeds (first, middle, last layer) at the best epoch; row B's runs are not NP (no
# grad_cosine). Medians (never the means): corr_after .3 / .05, zz_cond 20 / 3e6, zz_eig_max 4 / .5, grad_cosine
# .9 / .2.
LAYERS = [{"corr_after": [0.3, 9.0, 0.05], "zz_cond": [20.0, 9.0, 3e6], "zz_eig_max": [4.0, 9.0, 0.5],
           "zz_eig_min": [0.2, 9.0, 1e-7], "corr_before": [0.5, 9.0, 0.5], "grad_cosine": [0.9, 9.0, 0.2]},
          {"corr_after": [0.1, 9.0, 0.02], "zz_cond": [10.0, 9.0, 1e6], "zz_eig_max": [2.0, 9.0, 0.25],
           "zz_eig_min": [0.2, 9.0, 1e-7], "corr_before": [0.5, 9.0, 0.5], "grad_cosine": [0.8, 9.0, 0.1]},
          {"corr_after": [0.8, 9.0, 0.5], "zz_cond": [40.0, 9.0, 5e6], "zz_eig_max": [8.0, 9.0, 1.0],
           "zz_eig_min": [0.2, 9.0, 1e-7], "corr_before": [0.5, 9.0, 0.5], "grad_cosine": [0.95, 9.0, 0.6]}]
CHOSEN = ["corr_after", "zz_cond", "zz_eig_max", "grad_cosine"]


def _diagnostic_rows(tmp_path) -> list[SettingRow]:
    rows = [SettingRow((("variant", v), ("lr", "0.1")), {}) for v in ("A", "B")]
    wrong = {k: [-1.0, -1.0, -1.0] for k in LAYERS[0]}  # the last epoch: never read
    _add_seeds(tmp_path, rows[0], "np", LAYERS, last=wrong)
    _add_seeds(tmp_path, rows[1], "bp", [{k: v for k, v in layers.items() if k != "grad_cosine"}
                                         for layers in LAYERS], last=wrong)
    return rows


def test_the_sweep_file_chooses_the_diagnostic_columns_and_their_order(tmp_path):
    """[sweep] diagnostics: one column per name in the file's order after every other column, each the median
    over seeds of the first / last layer at the selected epoch, in its own format (3 decimals for correlations
    and cosines, 3 significant digits for cond and eigenvalues); – for the row whose runs lack grad_cosine. The
    CSV has <key>_first_median, <key>_last_median in the same order; figures not chosen are nowhere."""
    from analogdecorr.sweep.summary import DIAGNOSTIC_BY_KEY

    spec = parse_sweep({"grid": {"variant": {"A": {"decor": "none"}, "B": {"decor": "whiten"}}, "lr": [0.1]},
                        "base": {"dataset": "digits"}, "sweep": {"seeds": [0, 1, 2], "diagnostics": CHOSEN}})
    assert spec.diagnostics == tuple(CHOSEN)
    rows = _diagnostic_rows(tmp_path)
    md = markdown(spec, rows)
    header, cells = _table(md)
    columns = [DIAGNOSTIC_BY_KEY[k].column for k in CHOSEN]
    assert columns == ["corr after L0 / last", "cond ⟨zzᵀ⟩ L0 / last", "λ_max ⟨zzᵀ⟩ L0 / last",
                       "cos(NP, ∇) L0 / last"]
    assert header[header.index("settings") + 1:] == columns
    assert cells["A"][-4:] == ["0.300 / 0.050", "20 / 3e+06", "4 / 0.5", "0.900 / 0.200"]
    assert cells["B"][-4:] == ["0.300 / 0.050", "20 / 3e+06", "4 / 0.5", "–"]
    assert "λ_min" not in md and "corr before" not in md
    legend = next(line for line in md.splitlines() if line.startswith("Seeds "))
    assert [legend.index(f"`{c}`: ") for c in columns] == sorted(legend.index(f"`{c}`: ") for c in columns)
    assert "(results.json's corr_after, zz_cond, zz_eig_max, grad_cosine)" in legend
    reader = csv.DictReader(io.StringIO(csv_text(spec, rows)))
    table = list(reader)
    assert reader.fieldnames[reader.fieldnames.index("settings") + 1:] == [
        f"{k}_{end}_median" for k in CHOSEN for end in ("first", "last")]
    assert [float(table[0][f"{k}_{end}_median"]) for k in CHOSEN for end in ("first", "last")] == [
        0.3, 0.05, 20.0, 3e6, 4.0, 0.5, 0.9, 0.2]
    assert table[1]["grad_cosine_first_median"] == table[1]["grad_cosine_last_median"] == ""


def test_by_default_only_the_cond_column_is_shown_with_its_legend_sentence(tmp_path):
    """A sweep file without diagnostics keeps the summary it had (runs that recorded every figure still show
    only cond ⟨zzᵀ⟩, with the legend sentence word for word); diagnostics = [] shows none."""
    spec = _spec()
    assert spec.diagnostics == ("zz_cond",)
    rows = _diagnostic_rows(tmp_path)
    md = markdown(spec, rows)
    header, cells = _table(md)
    assert header[-2:] == ["settings", "cond ⟨zzᵀ⟩ L0 / last"] and cells["A"][-1] == "20 / 3e+06"
    assert (" `cond ⟨zzᵀ⟩ L0 / last`: the condition number of the centred ⟨z zᵀ⟩ of the first and the last "
            "layer's decorrelated input at the selected epoch (results.json's zz_cond), median over the seeds (– "
            "where the runs did not record it).\n") in md
    assert csv_text(spec, rows).splitlines()[0].endswith(",settings,zz_cond_first_median,zz_cond_last_median")
    none = parse_sweep({"grid": {"lr": [0.1]}, "base": {"dataset": "digits"}, "sweep": {"diagnostics": []}})
    assert "⟨zzᵀ⟩" not in markdown(none, rows) and csv_text(none, rows).splitlines()[0].endswith(",settings")


def test_seconds_per_epoch_is_each_runs_mean_over_its_epochs_then_mean_and_std_over_the_seeds(tmp_path):
    """The per-run column `s/epoch` ([sweep] diagnostics = [..., "seconds"]): per seed the mean of results.json's
    seconds over every epoch (not the selected epoch's), then mean ± std over the seeds in 2 decimals, after the
    per-layer columns in the file's order; – for a row whose runs did not record seconds; the CSV has
    seconds_mean, seconds_std; its own legend sentence (the per-layer one is unchanged)."""
    from types import SimpleNamespace

    from analogdecorr.sweep.summary import add_run

    spec = parse_sweep({"grid": {"variant": {"A": {"decor": "none"}, "B": {"decor": "whiten"}}, "lr": [0.1]},
                        "base": {"dataset": "digits"}, "sweep": {"seeds": [0, 1], "diagnostics": ["seconds",
                                                                                                  "zz_cond"]}})
    rows = [SettingRow((("variant", v), ("lr", "0.1")), {}) for v in ("A", "B")]
    # seed 0: epochs 1, 2, 6 s (mean 3; its best-validation epoch 2 took 2 s); seed 1: 4, 5, 6 s (mean 5)
    for row, per_seed in ((rows[0], [[1.0, 2.0, 6.0], [4.0, 5.0, 6.0]]), (rows[1], [[None] * 3] * 2)):
        for seed, seconds in enumerate(per_seed):
            out = tmp_path / f"{row.setting[0][1]}{seed}"
            out.mkdir()
            epochs = [{"epoch": e + 1, "val_acc": acc, "test_acc": acc, "zz_cond": [10.0, 100.0]}
                      for e, acc in enumerate((0.2, 0.6, 0.4))]
            for e, s in zip(epochs, seconds, strict=True):
                if s is not None:
                    e["seconds"] = s
            (out / "results.json").write_text(json.dumps({"epochs": epochs}))
            add_run(row, SimpleNamespace(out=out, config=SimpleNamespace(epochs=3)), "validation", "val_acc")
    md = markdown(spec, rows)
    header, cells = _table(md)
    assert header[header.index("settings") + 1:] == ["s/epoch", "cond ⟨zzᵀ⟩ L0 / last"]
    assert cells["A"][-2:] == ["4.00 ± 1.41", "10 / 100"] and cells["B"][-2:] == ["–", "10 / 100"]
    assert ("`s/epoch`: seconds per epoch of training (its batches, not its evaluation), mean over each run's "
            "epochs (results.json's seconds), then mean ± std over the seeds") in md
    assert "(results.json's zz_cond), median over the seeds" in md
    table = list(csv.DictReader(io.StringIO(csv_text(spec, rows))))
    assert float(table[0]["seconds_mean"]) == 4.0
    assert float(table[0]["seconds_std"]) == pytest.approx(2 ** 0.5, rel=1e-5)
    assert table[1]["seconds_mean"] == table[1]["seconds_std"] == ""
    assert "s/epoch" not in markdown(_spec(), rows) and "seconds_mean" not in csv_text(_spec(), rows)


@pytest.mark.parametrize("value, message", [
    (["zz_cond", "corr_afterr"], "unknown diagnostic 'corr_afterr' in [sweep] diagnostics (did you mean "
                                 "'corr_after'?); choose from zz_cond, zz_eig_max, zz_eig_min, zz_rank, "
                                 "corr_after, corr_before, grad_cosine, seconds"),
    (["second"], "unknown diagnostic 'second' in [sweep] diagnostics (did you mean 'seconds'?)"),
    ("zz_cond", "[sweep] diagnostics must be a list of column names"),
    (["zz_cond", "zz_cond"], "[sweep] diagnostics lists 'zz_cond' twice"),
])
def test_a_bad_diagnostics_list_is_one_error_at_parse_time(value, message):
    data = {"base": {"dataset": "digits"}, "grid": {"lr": [0.1]}, "sweep": {"diagnostics": value}}
    with pytest.raises(ConfigError) as e:
        parse_sweep(data)
    assert message in str(e.value) and "\n" not in str(e.value)
