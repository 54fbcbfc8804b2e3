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


def test_cond_column_is_the_median_over_seeds_of_the_first_and_last_layer_at_the_selected_epoch(tmp_path):
    """The appended `cond ⟨zzᵀ⟩ L0 / last` column: per seed results.json's zz_cond at the best-validation epoch
    (not the last), first and last layer (not a middle one), then the median over the seeds (not the mean); a
    row whose runs did not record zz_cond shows –, and a sweep where none did has no such column."""
    from types import SimpleNamespace

    from analogdecorr.sweep.summary import COND_COLUMN, add_run

    spec = _spec()
    rows = [SettingRow((("variant", v), ("lr", "0.1")), {}) for v in ("A", "B")]
    # (first, middle, last) at the best epoch 2; the last epoch's values must not be read
    firsts, lasts = [10.0, 2.0, 3.0], [400.0, 100.0, 1e6]
    for seed in range(3):
        out = tmp_path / f"s{seed}"
        out.mkdir()
        epochs = [{"epoch": e, "val_acc": acc, "test_acc": acc} for e, acc in ((1, 0.2), (2, 0.6), (3, 0.4))]
        epochs[1]["zz_cond"] = [firsts[seed], 7.0, lasts[seed]]
        epochs[2]["zz_cond"] = [99.0, 99.0, 99.0]
        (out / "results.json").write_text(json.dumps({"epochs": epochs}))
        add_run(rows[0], SimpleNamespace(out=out, config=SimpleNamespace(epochs=3)), "validation", "val_acc")
        plain = tmp_path / f"plain{seed}"
        plain.mkdir()
        (plain / "results.json").write_text(json.dumps({"epochs": [{k: v for k, v in r.items() if k != "zz_cond"}
                                                                     for r in epochs]}))
        add_run(rows[1], SimpleNamespace(out=plain, config=SimpleNamespace(epochs=3)), "validation", "val_acc")
    md = markdown(spec, rows).splitlines()
    head = next(line for line in md if line.startswith("| variant"))
    header = [c.strip() for c in head.strip("|").split("|")]
    assert header[-2:] == ["settings", COND_COLUMN]  # appended after every existing column
    cells = {line.split(" | ")[0]: [c.strip() for c in line.strip("|").split("|")] for line in md
             if line.startswith("| A ") or line.startswith("| B ")}
    assert cells["| A"][-1] == "3 / 400" and cells["| B"][-1] == "–"
    table = list(csv.DictReader(io.StringIO(csv_text(spec, rows))))
    assert float(table[0]["zz_cond_first_median"]) == 3.0 and float(table[0]["zz_cond_last_median"]) == 400.0
    assert table[1]["zz_cond_first_median"] == ""
    assert COND_COLUMN not in markdown(spec, rows[1:]) and "zz_cond" not in csv_text(spec, rows[1:])
