"""sims/paper_differences.py: the declaration of what the paper's code does differently, its checks,
the resume/skip logic and the table built from the stored results (fake runs: no training, no paper code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_module import load_script

from analogdecorr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


ref = load_script("sims/paper_differences.py")

DECLARATION = """
[paper_code]
paper = "00cf470"

[[measurement]]
name = "package"
change = "none"
mode = "ours"
seeds = [1, 3]
reference = true

[[measurement]]
name = "beta2"
row = 7
change = "Adam β₂ 0.9999"
mode = "ours"
seeds = [1, 3]
adam_beta2 = 0.9999

[[measurement]]
name = "head"
row = 2
change = "HEAD, fixed"
mode = "paper"
seeds = [1]
fix_np = true
"""


def declare(tmp_path: Path, text: str = DECLARATION) -> Path:
    path = tmp_path / "differences.toml"
    path.write_text(text)
    return path


def fake_runner(calls: list, accuracy: dict[tuple[str, int], float] | None = None):
    """A runner that records its calls and returns main()'s JSON line with test accuracy ``accuracy`` (or .5)."""

    def run(m, seed, code):
        calls.append((m.name, seed, code))
        acc = (accuracy or {}).get((m.name, seed), 0.5)
        flags = {k: v for k, v in m.flags(seed).items() if k != "code"}
        return {**flags, "val_acc": [0.1, acc - 0.01], "test_acc": [0.1, acc], "seconds": 1.0}

    return run


def test_the_repository_declaration_checks_and_the_study_runs_it_after_the_scaling_part():
    measurements = ref.load_measurements(ref.DECLARATION)
    assert [m.name for m in measurements if m.reference] == ["package"]
    assert {m.row for m in measurements} >= {1, 2, 3, 4, 6, 7, 8, 9, 10}
    head = next(m for m in measurements if m.name == "head_fix_np")
    assert head.code == "00cf470" and head.argv(1) == ["paper", "--seed", "1", "--adam-beta2", "0.9999", "--fix-np"]
    study = load_script("sims/study.py")
    parts, _ = study.load_study(study.DECLARATION, REPO)
    names = [p.name for p in parts]
    assert names.index("paper_differences") == names.index("paper_digits_scaling") + 1
    part = parts[names.index("paper_differences")]
    assert part.script == REPO / "sims" / "paper_differences.py" and part.args == []
    assert part.out == REPO / "sims" / "out" / "paper_differences"
    assert [(v.marker, v.file) for v in part.tables] == [("paper_differences", "table.md")]


@pytest.mark.parametrize("old, new, message", [
    ('mode = "paper"\n', 'mode = "papers"\n', "mode must be one of ours, paper, paper-iclr"),
    ("row = 7\n", "", "(beta2): needs row = N"),
    ("row = 7\n", "row = 0\n", "row must be a positive integer"),
    ("seeds = [1]\n", "seeds = [1, 1]\n", "seeds must be a list of distinct integers"),
    ("seeds = [1]\n", "", "(head): needs seeds"),
    ("fix_np = true\n", "demean = true\n", "demean is for mode = \"paper-iclr\""),
    ("adam_beta2 = 0.9999\n", "adam_beta2 = 0.9999\nfix_np = true\n", "fix_np is for mode = \"paper\""),
    ("adam_beta2 = 0.9999\n", "adam_beta2 = 1.5\n", "adam_beta2 must be a number in (0, 1)"),
    ("adam_beta2 = 0.9999\n", "set = { modle = \"paper_mlp\" }\n", "(beta2): set: "),
    ("fix_np = true\n", "set = { model = \"paper_mlp\" }\n", "set: the paper modes take sigma"),
    ("[paper_code]\npaper = \"00cf470\"\n", "", "mode paper needs its commit in [paper_code]"),
    ('name = "head"', 'name = "beta2"', "two measurements are named 'beta2'"),
    ('change = "HEAD, fixed"\n', 'change = "HEAD, fixed"\nreference = true\n', "the reference must be mode = \"ours\""),
    ('seeds = [1]\n', 'seeds = [1]\nseed = 2\n', "unknown key 'seed'"),
    ('change = "none"', 'change = "a | b"', "change must be a non-empty label without |"),
])
def test_a_bad_declaration_is_a_one_line_error_naming_the_entry(tmp_path, old, new, message):
    assert old in DECLARATION
    with pytest.raises(ConfigError) as e:
        ref.load_measurements(declare(tmp_path, DECLARATION.replace(old, new, 1)))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_declaration_that_is_not_toml_or_missing_is_an_error_naming_the_flag(tmp_path):
    with pytest.raises(ConfigError, match="--file"):
        ref.load_measurements(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        ref.load_measurements(declare(tmp_path, "[[measurement]\n"))


def test_finished_measurements_are_skipped_and_changed_flags_run_again(tmp_path, monkeypatch):
    monkeypatch.delenv("PAPER_CODE", raising=False)
    out = tmp_path / "out"
    ours = [m for m in ref.load_measurements(declare(tmp_path)) if m.mode == "ours"]
    calls: list = []
    assert ref.measure(ours, out, jobs=2, runner=fake_runner(calls), log=lambda s: None) == 0
    assert sorted(calls) == [("beta2", 1, None), ("beta2", 3, None), ("package", 1, None), ("package", 3, None)]
    stored = json.loads((out / "beta2-seed3.json").read_text())
    assert stored["flags"] == {"mode": "ours", "seed": 3, "adam_beta2": 0.9999, "set": {}, "fix_np": False,
                               "demean": False, "code": None} and stored["test_acc"] == [0.1, 0.5]
    assert sorted(p.name for p in out.iterdir()) == ["beta2-seed1.json", "beta2-seed3.json", "package-seed1.json",
                                                     "package-seed3.json"]  # no temp files left
    calls.clear()
    assert ref.measure(ours, out, runner=fake_runner(calls), log=lambda s: None) == 0 and calls == []
    # a changed flag makes every seed of that measurement stale; a new seed is the only run of the other
    text = DECLARATION.replace("adam_beta2 = 0.9999", "adam_beta2 = 0.99").replace("seeds = [1, 3]\nreference",
                                                                                   "seeds = [1, 3, 4]\nreference")
    ours = [m for m in ref.load_measurements(declare(tmp_path, text)) if m.mode == "ours"]
    assert [(m.name, s) for m, s in ref.pending(ours, out)] == [("package", 4), ("beta2", 1), ("beta2", 3)]
    assert ref.measure(ours, out, runner=fake_runner(calls), log=lambda s: None) == 0
    assert sorted(calls) == [("beta2", 1, None), ("beta2", 3, None), ("package", 4, None)]
    assert json.loads((out / "beta2-seed1.json").read_text())["flags"]["adam_beta2"] == 0.99


def test_a_failed_run_stores_nothing_and_is_counted_and_the_others_are_stored(tmp_path):
    out = tmp_path / "out"
    ours = [m for m in ref.load_measurements(declare(tmp_path)) if m.mode == "ours"]
    good = fake_runner([])

    def runner(m, seed, code):
        if (m.name, seed) == ("beta2", 3):
            raise RuntimeError("exit 1: boom")
        return good(m, seed, code)

    logs: list[str] = []
    assert ref.measure(ours, out, runner=runner, log=logs.append) == 1
    assert "failed: beta2 seed 3: exit 1: boom" in logs
    assert not (out / "beta2-seed3.json").exists() and (out / "beta2-seed1.json").exists()
    # a run that echoes other flags than declared is not stored either
    def liar(m, seed, code):
        return {**good(m, seed, code), "adam_beta2": 0.5}

    assert ref.measure(ours, out, runner=liar, log=logs.append) == 1 and "echoed other flags" in logs[-1]


def test_the_paper_code_is_needed_only_while_a_paper_measurement_has_to_run(tmp_path, monkeypatch):
    monkeypatch.delenv("PAPER_CODE", raising=False)
    out = tmp_path / "out"
    measurements = ref.load_measurements(declare(tmp_path))
    calls: list = []
    with pytest.raises(ConfigError) as e:
        ref.measure(measurements, out, runner=fake_runner(calls), log=lambda s: None)
    message = str(e.value)
    assert "measurement head (mode paper) needs the paper's code at 00cf470" in message and "\n" not in message
    assert "git clone https://github.com/nasiryahm/CorrelationsRuinGD" in message and "PAPER_CODE=DIR" in message
    assert calls == [] and not out.exists()  # checked before the first run
    # a folder that is not the declared commit's checkout is refused too
    monkeypatch.setenv("PAPER_CODE", str(tmp_path))
    with pytest.raises(ConfigError, match="needs the paper's code at 00cf470; .* is at no git commit"):
        ref.measure(measurements, out, runner=fake_runner(calls), log=lambda s: None)
    # once the paper measurement is stored, nothing asks for the checkout
    monkeypatch.delenv("PAPER_CODE")
    head = next(m for m in measurements if m.name == "head")
    ref.write_json_atomic(head.path(out, 1), {"flags": head.flags(1), "val_acc": [0.8], "test_acc": [0.83]})
    assert ref.measure(measurements, out, runner=fake_runner(calls), log=lambda s: None) == 0
    assert sorted(calls) == [("beta2", 1, None), ("beta2", 3, None), ("package", 1, None), ("package", 3, None)]


def test_the_table_is_built_from_the_stored_results(tmp_path):
    out = tmp_path / "out"
    measurements = ref.load_measurements(declare(tmp_path))
    accuracy = {("package", 1): 0.791, ("package", 3): 0.749, ("beta2", 1): 0.788, ("head", 1): 0.830}
    ours = [m for m in measurements if m.mode == "ours"]
    runner = fake_runner([], accuracy)
    for m, seed in ref.pending(ours, out):
        if (m.name, seed) != ("beta2", 3):  # beta2 seed 3 not measured yet
            ref.write_json_atomic(m.path(out, seed), {"flags": m.flags(seed), **runner(m, seed, None)})
    head = measurements[2]
    ref.write_json_atomic(head.path(out, 1), {"flags": head.flags(1), "val_acc": [0.5, 0.819], "test_acc": [0.5, 0.83]})
    lines = ref.table(measurements, out).splitlines()
    assert lines[0] == ("| # | change | code | seeds | test (validation) at epoch 2 | mean test "
                        "| Δ test vs the package, points (same seed) |")
    assert lines[2:] == [
        "|  | none | package | 1, 3 | .791 (.781) / .749 (.739) | .770 | – |",
        "| 7 | Adam β₂ 0.9999 | package | 1, 3 | .788 (.778) / – | .788 | -0.3 / – |",
        "| 2 | HEAD, fixed | paper code 00cf470 | 1 | .830 (.819) | .830 | +3.9 |",
    ]
    # a stored result with other flags does not count: its cell is – until it is measured again
    stale = json.loads((out / "package-seed1.json").read_text())
    stale["flags"]["set"] = {"sigma": "1e-6"}
    (out / "package-seed1.json").write_text(json.dumps(stale))
    assert ref.table(measurements, out).splitlines()[2] == "|  | none | package | 1, 3 | – / .749 (.739) | .749 | – |"


def test_the_cli_counts_rebuilds_the_table_and_refuses_a_paper_run_without_its_code(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PAPER_CODE", raising=False)
    path, out = declare(tmp_path), tmp_path / "out"
    measurements = ref.load_measurements(path)
    package = measurements[0]
    ref.write_json_atomic(package.path(out, 1), {"flags": package.flags(1), "val_acc": [0.799], "test_acc": [0.791]})
    flags = ["--file", str(path), "--out", str(out)]
    assert ref.main([*flags, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("5 runs, 1 finished, 4 to do\n")
    assert "to do: head seed 1: paper_digits_reference.py paper --seed 1 --adam-beta2 0.999 --fix-np" in printed
    assert ref.main([*flags, "--tables-only"]) == 0
    assert "| .791 (.799) / – | .791 |" in (out / "table.md").read_text()
    assert ref.main(flags) == 2  # a paper run to do and no checkout: one line, nothing run
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: measurement head (mode paper) needs the paper's code") and "\n" not in err
    assert sorted(p.name for p in out.iterdir()) == ["package-seed1.json", "table.md"]
