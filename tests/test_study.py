"""sims/study.py on a toy study (two tiny sweeps, one of them tuned, and a toy script part) on a real local Ray
cluster: every part runs in order, a second call trains nothing, a lost run is the only one redone, marker blocks
are replaced exactly, --tables-only never trains, and bad declarations or markers are one-line errors before any
run starts. Also benchmarks/time_to_accuracy.py's skip-when-measured logic on a synthetic JSON."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from script_module import load_script

from analogdecorr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

TINY_RUNS = """
[base]
dataset = "digits"
hidden = [8]
epochs = 1
probe_size = 0
drift_times = []

[grid]
decor = ["none", "centre"]
"""

SWEEP_A = """
[sweep]
name = "a"
seeds = [0, 1]
out = "sims/out/a"
""" + TINY_RUNS

SWEEP_B = """
[sweep]
name = "b"
seeds = [0]
out = "sims/out/b"
""" + TINY_RUNS + """
[tune]
seeds = [100]
rows = ["decor"]

[tune.search]
lr = [1e-3, 1e-2]
"""

# A script part without training: --status prints its count, a run writes table.md and marks itself done.
TOY = """
import sys
from pathlib import Path

out = Path("sims/out/toy")
done = out / "done"
if "--status" in sys.argv:
    print(f"1 runs, {int(done.exists())} finished, {int(not done.exists())} to do")
elif "--tables" in sys.argv:
    if done.exists():
        (out / "table.md").write_text("# toy\\n\\n## x\\n\\n| k | v |\\n| --- | --- |\\n| one | 1 |\\n| two | 2 |\\n")
else:
    out.mkdir(parents=True, exist_ok=True)
    (out / "jobs").write_text(" ".join(sys.argv[1:]))
    done.write_text("")
    (out / "table.md").write_text("# toy\\n\\n## x\\n\\n| k | v |\\n| --- | --- |\\n| one | 1 |\\n| two | 2 |\\n")
"""

DECLARATION = """
[[part]]
name = "a"
sweep = "sims/a.toml"
outputs = ["summary.md", "summary.csv"]

[[part.table]]
doc = "docs/README.md"
rows = { decor = ["centre"] }
columns = ["decor", "seeds", "test acc @ sel."]
rename = { "test acc @ sel." = "test acc" }

[[part.table]]
view = "delta"
doc = "docs/README.md"
delta = { name = "Δ", of = "test_acc_selected_mean", against = { decor = "centre" }, after = "decor" }
columns = ["decor", "Δ"]

[[part.table]]
view = "seeds"
doc = "docs/README.md"
seeds = "test_last"
labels = { none = "plain" }

[[part]]
name = "b"
sweep = "sims/b.toml"
outputs = ["summary.md", "search.md", "chosen.toml"]

[[part.table]]
doc = "docs/README.md"
columns = ["decor", "chosen", "seeds"]

[[part]]
name = "toy"
script = "sims/toy.py"
args = ["--flag"]
out = "sims/out/toy"
jobs = "--jobs"
status = ["--status"]
tables_only = ["--tables"]
outputs = ["table.md"]

[[part.table]]
view = "x"
doc = "docs/README.md"
file = "table.md"
section = "x"
rows = { k = ["two"] }
"""

DOC = """# Results

Prose before.

<!-- study:a -->

| old | table |
| --- | --- |

<!-- /study:a -->

Prose between, kept as it is.

<!-- study:a/delta -->
<!-- /study:a/delta -->

- a list item:

  <!-- study:a/seeds -->
  | old |
  <!-- /study:a/seeds -->

<!-- study:b -->
<!-- /study:b -->

<!-- study:toy/x -->
<!-- /study:toy/x -->

Prose after.
"""


study = load_script("sims/study.py")


@pytest.fixture(scope="module")
def ray_cluster():
    """One local 1-CPU Ray cluster for the module: the engine uses it instead of starting its own per part."""
    import ray

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def make_root(root: Path, declaration: str = DECLARATION, doc: str = DOC) -> Path:
    (root / "sims").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "sims" / "a.toml").write_text(SWEEP_A)
    (root / "sims" / "b.toml").write_text(SWEEP_B)
    (root / "sims" / "toy.py").write_text(TOY)
    (root / "sims" / "study.toml").write_text(declaration)
    (root / "docs" / "README.md").write_text(doc)
    return root


def run(root: Path, *flags: str) -> int:
    return study.main(["--file", str(root / "sims" / "study.toml"), "--root", str(root), "--no-progress", *flags])


def results(root: Path, part: str) -> dict[str, int]:
    """run folder → mtime of its results.json, for every finished run of a part."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (root / "sims" / "out" / part / "runs").glob("*/results.json")}


@pytest.fixture(scope="module")
def ran(ray_cluster, tmp_path_factory):
    """The toy study run once from nothing: (root, exit code, stdout)."""
    root = make_root(tmp_path_factory.mktemp("study"))
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = run(root, "--jobs", "1")
    return root, code, buf.getvalue()


def test_every_part_runs_in_order_and_fills_its_doc_blocks(ran):
    root, code, out = ran
    assert code == 0, out
    assert len(results(root, "a")) == 4  # 2 settings x 2 seeds
    assert len(results(root, "b")) == 2 * 2 + 2  # 2 rows x 2 lrs (search seed 100) + 1 final seed per row
    assert (root / "sims" / "out" / "toy" / "jobs").read_text() == "--flag --jobs 1"  # args, then --jobs N
    order = [out.index(f"starting {name}:") for name in ("a", "b", "toy")]
    assert order == sorted(order)
    doc = (root / "docs" / "README.md").read_text()
    parts = {p.name: p for p in study.load_declaration(root / "sims" / "study.toml", root)}
    summary = (root / "sims" / "out" / "a" / "summary.md").read_text()
    centre = next(line for line in summary.splitlines() if line.startswith("| centre |")).split(" | ")
    assert ("<!-- study:a -->\n\n| decor | seeds | test acc |\n| --- | --- | --- |\n"
            f"| centre | 2/2 | {centre[4]} |\n\n<!-- /study:a -->") in doc
    means = {r["decor"]: float(r["test_acc_selected_mean"]) for r in csv.DictReader(
        (root / "sims" / "out" / "a" / "summary.csv").open())}
    delta = f"{(means['none'] - means['centre']) * 100:+.1f}"
    assert f"| decor | Δ |\n| --- | --- |\n| none | {delta} |\n| centre |  |\n" in doc
    seeds = study.build_table(parts["a"], parts["a"].tables[2])
    assert seeds.splitlines()[0] == "| decor | seed 0 | seed 1 | mean ± std |"
    assert [r.split(" | ")[0] for r in seeds.splitlines()[2:]] == ["| plain", "| centre"]
    assert "  <!-- study:a/seeds -->\n\n" + "".join("  " + r + "\n" for r in seeds.splitlines()) in doc
    assert "| decor | chosen | seeds |" in doc and "| none | lr=" in doc  # the tuned sweep's rows and choices
    assert "<!-- study:toy/x -->\n\n| k | v |\n| --- | --- |\n| two | 2 |\n\n<!-- /study:toy/x -->" in doc
    for prose in ("Prose before.\n", "Prose between, kept as it is.\n", "- a list item:\n", "Prose after.\n"):
        assert prose in doc
    assert "rewrote:" in out and "docs/README.md" in out.split("rewrote:")[1]


def test_a_second_call_trains_nothing_and_a_lost_run_is_the_only_one_redone(ran, capsys):
    root, _, _ = ran
    a, b = results(root, "a"), results(root, "b")
    doc = (root / "docs" / "README.md").read_text()
    assert run(root, "--jobs", "1") == 0
    out = capsys.readouterr().out
    assert "resuming a: 4 runs, 4 finished, 0 to do" in out and "resuming b: 6 runs, 6 finished, 0 to do" in out
    assert results(root, "a") == a and results(root, "b") == b
    assert "docs/README.md" not in out.split("rewrote")[1]  # the same tables: the doc is left alone
    assert (root / "docs" / "README.md").read_text() == doc
    lost = sorted(a)[0]
    shutil.rmtree(root / "sims" / "out" / "a" / "runs" / lost)
    assert run(root, "--only", "a", "--jobs", "1") == 0
    out = capsys.readouterr().out
    assert "resuming a: 4 runs, 3 finished, 1 to do" in out and "[1/1]" in out and " b:" not in out
    now = results(root, "a")
    assert set(now) == set(a) and {k: v for k, v in now.items() if k != lost} == {
        k: v for k, v in a.items() if k != lost}


def test_list_names_parts_runs_and_state(ran, capsys):
    root, _, _ = ran
    assert run(root, "--list") == 0
    out = capsys.readouterr().out
    assert "[1/3] a (sweep sims/a.toml): 4 runs, 4 finished, finished" in out
    assert "[3/3] toy (script sims/toy.py --flag): 1 runs, 1 finished, finished" in out
    assert "study:a/seeds in docs/README.md" in out and "study:a/delta in docs/README.md" in out


def test_tables_only_does_not_train_and_keeps_the_blocks_of_unfinished_parts(ray_cluster, tmp_path, capsys):
    root = make_root(tmp_path)
    assert run(root, "--tables-only") == 0
    out = capsys.readouterr().out
    assert results(root, "a") == {} and results(root, "b") == {}
    assert not (root / "sims" / "out" / "toy" / "done").exists()
    assert not (root / "sims" / "out" / "a").exists()  # nothing finished: an earlier table would be kept
    assert "[1/3] a: no finished runs of 4; its tables are left as they are" in out
    assert (root / "docs" / "README.md").read_text() == DOC
    assert "docs/README.md: study:a kept (part a has runs left)" in out
    assert run(root, "--dry-run") == 0
    assert "[1/3] a (sweep sims/a.toml): 4 runs, 0 finished, 4 to do" in capsys.readouterr().out
    assert results(root, "a") == {}


def test_tables_only_rebuilds_tables_and_docs_from_finished_runs(ran, tmp_path, capsys):
    src, _, _ = ran
    root = tmp_path / "copy"
    shutil.copytree(src, root)
    for part in ("a", "b"):
        (root / "sims" / "out" / part / "summary.md").unlink()
    doc = (root / "docs" / "README.md").read_text()
    (root / "docs" / "README.md").write_text(DOC)
    before = {part: results(root, part) for part in ("a", "b")}
    assert run(root, "--tables-only") == 0
    assert {part: results(root, part) for part in ("a", "b")} == before
    assert all((root / "sims" / "out" / part / "summary.md").exists() for part in ("a", "b"))
    assert (root / "docs" / "README.md").read_text() == doc


def test_replace_block_is_exact_and_idempotent(tmp_path):
    text = "a\n<!-- study:p -->\nold\n<!-- /study:p -->\nb\n   <!-- study:p/v -->\n   <!-- /study:p/v -->\nc"
    doc = tmp_path / "d.md"
    once = study.replace_block(text, doc, "p", "| x |\n| --- |\n| 1 |\n")
    assert once == ("a\n<!-- study:p -->\n\n| x |\n| --- |\n| 1 |\n\n<!-- /study:p -->\nb\n"
                    "   <!-- study:p/v -->\n   <!-- /study:p/v -->\nc")
    assert study.replace_block(once, doc, "p", "| x |\n| --- |\n| 1 |\n") == once
    assert study.find_blocks("see `<!-- study:q -->`\n```\n<!-- study:q -->\n```\n", doc) == {}  # quoted
    twice = study.replace_block(once, doc, "p/v", "| y |\n| --- |\n")
    assert twice.endswith("   <!-- study:p/v -->\n\n   | y |\n   | --- |\n\n   <!-- /study:p/v -->\nc")


@pytest.mark.parametrize("doc, message", [
    (DOC.replace("<!-- study:b -->\n<!-- /study:b -->\n", ""),
     "docs/README.md: no <!-- study:b --> … <!-- /study:b --> block; put the pair"),
    (DOC.replace("<!-- /study:b -->\n", ""), "docs/README.md:"),
    (DOC + "<!-- study:c -->\n<!-- /study:c -->\n", "<!-- study:c --> names no table declared for this file"),
    (DOC.replace("<!-- study:b -->", "text <!-- study:b -->"), "<!-- study:b --> must be alone on its line"),
])
def test_a_missing_or_bad_marker_is_one_line_error_before_any_run(tmp_path, capsys, doc, message):
    root = make_root(tmp_path, doc=doc)
    assert run(root) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (root / "sims" / "out").exists()


@pytest.mark.parametrize("flags, declaration, message", [
    (["--only", "a", "nope"], DECLARATION, "--only nope: no such part; parts: a, b, toy"),
    ([], DECLARATION.replace('doc = "docs/README.md"\nseeds', 'doc = "docs/README.md"\nseed'),
     "unknown key 'seed'"),
    ([], DECLARATION.replace('sweep = "sims/b.toml"', 'sweep = "sims/missing.toml"'),
     "sweep = 'sims/missing.toml': no such file"),
    ([], DECLARATION + '\n[[part]]\nname = "a"\nsweep = "sims/a.toml"\n', "two parts are named 'a'"),
])
def test_bad_declarations_and_unknown_parts_are_one_line_errors(tmp_path, capsys, flags, declaration, message):
    root = make_root(tmp_path, declaration=declaration)
    assert run(root, *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (root / "sims" / "out").exists()


def test_the_repository_declaration_and_its_markers_check(capsys):
    parts, claims = study.load_study(study.DECLARATION, REPO)
    study.check_markers(parts, claims)
    headline = claims[0]
    assert headline.marker == "headline" and headline.doc == REPO / "README.md"
    acceptance = next(c for c in claims if c.marker == "acceptance")  # issue 10's acceptance, every line judged
    assert acceptance.doc == REPO / "sims" / "README.md"
    assert sum(c.target is not None for c in acceptance.claims) >= 12
    assert {c.part.name for c in headline.claims} >= {"correlated_tuned", "mnist1d_tuned", "paper_digits",
                                                      "paper_digits_code", "where_decorrelation_matters"}
    assert [p.name for p in parts][:4] == ["demo", "correlated_tuned", "mnist1d_tuned", "paper_digits"]
    assert {v.marker for p in parts for v in p.tables} >= {"demo", "float/digits", "float_published/digits",
                                                           "analog_published/readme", "diagnostics_illustration",
                                                           "correlated_tuned", "mnist1d_tuned", "paper_digits",
                                                           "error_budget/digits", "error_budget/mnist1d",
                                                           "devices_digits", "devices_mnist1d",
                                                           "correlated_tuned/oracle", "where_decorrelation_matters"}
    # a sweep part names its file as declared (it goes into chosen.toml and every recipe header), not by the
    # absolute path of the checkout that ran it
    assert next(p for p in parts if p.name == "correlated_tuned").spec.source == "sweep file sims/correlated_tuned.toml"


# ------------------------------------------------------------------------------- time_to_accuracy.py
def _pair(task: str, rule: str, seed: int) -> dict:
    return {"task": task, "rule": rule, "seed": seed, "target_val_acc": 0.5, "target_near_chance": False,
            "settings": {"plain": {"lr": 0.02}, "decor": {"lr": 0.05}},
            "final_val_acc": {"plain": 0.5, "decor": 0.6}, "total_seconds": {"plain": 2.0, "decor": 2.0},
            "median_step_seconds": {"plain": 0.001, "decor": 0.002}, "plain": {"steps": 100, "seconds": 1.0},
            "decor": {"steps": 20, "seconds": 0.25}, "decor_acc_at_plain_budget": 0.6,
            "traces": {"plain": [[0, 0.0, 0.1], [100, 1.0, 0.5]], "decor": [[0, 0.0, 0.1], [20, 0.25, 0.6]]},
            "speedup_clock": 4.0 + seed, "speedup_steps": 2.5}


def test_time_to_accuracy_skips_a_measurement_it_has_and_rebuilds_its_table(tmp_path):
    config = {"tasks": "correlated", "rules": "np", "seeds": "0,1", "epochs": None, "eval_every": 10,
              "shared": {}, "plain": {}, "decor": {}, "search": None, "search_seeds": [100, 101],
              "plain_recipe": None, "decor_recipe": None}
    (tmp_path / "tta.json").write_text(json.dumps({"config": config, "pairs": [_pair("correlated", "np", s)
                                                                               for s in (0, 1)]}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [sys.executable, str(REPO / "benchmarks" / "time_to_accuracy.py"), "--tasks", "correlated", "--rules",
            "np", "--json", str(tmp_path / "tta.json"), "--md", str(tmp_path / "tta.md"), "--plot",
            str(tmp_path / "tta.png")]

    def call(*flags: str) -> str:
        res = subprocess.run([*base, *flags], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert call("--seeds", "0,1", "--dry-run").startswith("2 runs, 2 finished, 0 to do")
    assert call("--seeds", "0", "--dry-run").startswith("1 runs, 0 finished, 1 to do")  # other settings
    assert call("--seeds", "0,1", "--dry-run", "--force").startswith("2 runs, 0 finished, 2 to do")
    out = call("--seeds", "0,1")  # measured already: only the table and the plot
    assert "holds 2 pairs of these settings" in out and "| task | rule | seed" not in out
    md = (tmp_path / "tta.md").read_text()
    assert "| correlated, NP | 0.02 / 0.05 | .500 | **4.50×** (4.00–5.00, 2 of 2 seeds) | 2.50× | 2.00× |" in md
    assert (tmp_path / "tta.png").stat().st_size > 0


def test_a_bad_run_in_a_later_part_stops_the_study_before_the_first_part_trains(tmp_path, capsys):
    root = make_root(tmp_path)
    (root / "sims" / "b.toml").write_text(SWEEP_B.replace("lr = [1e-3, 1e-2]", "lr = [1e-3, -1.0]"))
    assert run(root) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lr=-1" in err and err.count("\n") == 1
    assert not (root / "sims" / "out" / "a").exists()


def test_a_table_that_cannot_be_built_keeps_its_block_and_the_others_are_written(ran, tmp_path, capsys):
    src, _, _ = ran
    root = tmp_path / "copy"
    shutil.copytree(src, root)
    decl = root / "sims" / "study.toml"
    decl.write_text(DECLARATION.replace('columns = ["decor", "chosen", "seeds"]', 'columns = ["decor", "nope"]'))
    (root / "docs" / "README.md").write_text(DOC)
    parts = study.load_declaration(decl, root)
    with pytest.raises(ConfigError, match=r"part b, table study:b: no column 'nope'; columns: decor, chosen, "):
        study.build_table(parts[1], parts[1].tables[0])
    assert run(root, "--tables-only") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no column 'nope'" in err and err.count("\n") == 1
    doc = (root / "docs" / "README.md").read_text()
    assert "<!-- study:b -->\n<!-- /study:b -->" in doc and "| two | 2 |" in doc  # b kept, toy written


# ------------------------------------------------------------------ row order and the headline (no runs)
GRID_SWEEP = """
[sweep]
name = "{name}"
seeds = [0, 1]
baseline = {{ decor = "centre" }}
out = "sims/out/{name}"

[base]
hidden = [8]

[grid]
decor = ["none", "centre", "offdiag"]

[grid.data]                                   # listed z before a: the order is the file's, not the alphabet's
z = {{ dataset = "digits" }}
a = {{ dataset = "mnist1d" }}
"""

# decor-major, as the sweep writes it; `*` marks the best setting, which a quoted figure must not carry
SUMMARY_MD = """# Sweep s

| decor | data | seeds | val_acc | p test | test acc @ sel. | test acc (last) | val best − last |
| --- | --- | --- | --- | --- | --- | --- | --- |
| none | z | 2/2 | 0.400 ± 0.010 | 0.020 | 0.410 ± 0.010 | 0.400 ± 0.010 | 0.020 ± 0.010 |
| none | a | 2/2 | 0.300 ± 0.010 | 0.500 | 0.310 ± 0.010 | 0.300 ± 0.010 | 0.000 ± 0.000 |
| centre | z | 2/2 | 0.500 ± 0.020 | – | 0.500 ± 0.020 | 0.490 ± 0.020 | 0.010 ± 0.010 |
| centre | a | 2/2 | 0.320 ± 0.010 | – | 0.320 ± 0.010 | 0.320 ± 0.010 | 0.000 ± 0.000 |
| offdiag | z | 2/2 | 0.600 ± 0.010 * | 0.004 | 0.600 ± 0.010 * | 0.600 ± 0.010 | 0.050 ± 0.010 |
| offdiag | a | 1/2 (1 diverged) | 0.330 | – | 0.330 | 0.330 | 0.000 |
"""

# unrounded means: offdiag z − centre z is +10.1 points here, not the +10.0 the rounded table would give
SUMMARY_CSV = """decor,data,seeds,done,diverged,val_acc_mean,test_acc_selected_mean,test_acc_selected_std,\
test_acc_last_mean,val_best_minus_last_mean
none,z,2,2,0,0.4,0.41,0.01,0.4,0.02
none,a,2,2,0,0.3,0.31,0.01,0.3,0
centre,z,2,2,0,0.5,0.4996,0.02,0.49,0.01
centre,a,2,2,0,0.32,0.32,0.01,0.32,0
offdiag,z,2,2,0,0.6,0.6004,0.01,0.6,0.05
offdiag,a,2,2,1,0.33,0.33,,0.33,0
"""

HEADLINE_DOC = """# R

<!-- study:headline -->

| claim | measured | Δ (points) | p | source |
| --- | --- | --- | --- | --- |
| z: offdiag vs centring | 0.1 vs 0.1 | +0.0 | 1 | `old` |
| u: kept | 0.777 ± 0.001 | | | `sims/u.toml` |

<!-- /study:headline -->

Prose after.
"""

HEADLINE = """
[[part]]
name = "s"
sweep = "sims/s.toml"

[[part]]
name = "u"
sweep = "sims/u.toml"

[headline]
doc = "docs/R.md"

[[headline.claim]]
label = "z: offdiag vs centring"
part = "s"
row = {{ data = "z", decor = "offdiag" }}
column = "test acc @ sel."
against = {{ decor = "centre" }}
p = "p test"

[[headline.claim]]
label = "a: centring"
part = "s"
row = {{ data = "a", decor = "centre" }}
column = "val_acc"
{extra}
[[headline.claim]]
label = "u: kept"
part = "u"
row = {{ decor = "none" }}
column = "test acc @ sel."

[[headline.claim]]
label = "u: never measured"
part = "u"
row = {{ decor = "centre" }}
column = "test acc @ sel."
"""


def headline_root(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "sims" / "out" / "s").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    for name in ("s", "u"):
        (tmp_path / "sims" / f"{name}.toml").write_text(GRID_SWEEP.format(name=name))
    (tmp_path / "sims" / "out" / "s" / "summary.md").write_text(SUMMARY_MD)
    (tmp_path / "sims" / "out" / "s" / "summary.csv").write_text(SUMMARY_CSV)
    (tmp_path / "sims" / "study.toml").write_text(HEADLINE.format(extra=extra))
    (tmp_path / "docs" / "R.md").write_text(HEADLINE_DOC)
    return tmp_path


def test_order_groups_rows_by_the_sweeps_axis_order_or_by_the_rows_list(tmp_path):
    root = headline_root(tmp_path)
    part = study.load_declaration(root / "sims" / "study.toml", root)[0]
    doc = root / "docs" / "R.md"

    def firsts(**kw) -> list[str]:
        table = study.build_table(part, study.TableView(marker="s", doc=doc, **kw))
        return [" ".join(r.strip("| ").split(" | ")[:2]) for r in table.splitlines()[2:]]

    # data in the sweep file's order (z, a: not sorted by name), decor within it in the axis order
    assert firsts(order=["data", "decor"]) == ["none z", "centre z", "offdiag z", "none a", "centre a", "offdiag a"]
    # a rows list orders its column's values (and keeps only those)
    assert firsts(order=["data", "decor"], rows={"decor": ["offdiag", "none"]}) == [
        "offdiag z", "none z", "offdiag a", "none a"]
    assert firsts(order=["decor"], columns=["data", "decor"]) == ["z none", "a none", "z centre", "a centre",
                                                                  "z offdiag", "a offdiag"]
    with pytest.raises(ConfigError, match="order: no column 'rule'; columns: decor, data"):
        firsts(order=["rule"])


def test_headline_quotes_finished_parts_and_keeps_the_rows_of_the_others(tmp_path):
    root = headline_root(tmp_path)
    parts, claims = study.load_study(root / "sims" / "study.toml", root)
    study.check_markers(parts, claims)
    changed, kept, errors = study.refresh_docs(parts, {"s"}, root, write=True, claims=claims)
    assert errors == [] and changed == [root / "docs" / "R.md"]
    text = (root / "docs" / "R.md").read_text()
    rows = text.split("<!-- study:headline -->\n\n")[1].split("\n\n<!-- /study:headline -->")[0].splitlines()
    assert rows == [
        "| claim | measured | Δ (points) | p | source |",
        "| --- | --- | --- | --- | --- |",
        "| z: offdiag vs centring | 0.600 ± 0.010 vs 0.500 ± 0.020 | +10.1 | 0.004 | `sims/s.toml` |",
        "| a: centring | 0.320 ± 0.010 |  |  | `sims/s.toml` |",
        "| u: kept | 0.777 ± 0.001 |  |  | `sims/u.toml` |",  # part u did not finish: the doc's row
        "| u: never measured | not measured yet |  |  | `sims/u.toml` |",
    ]
    assert text.endswith("Prose after.\n")
    assert [n.split("'")[1] for n in kept] == ["u: kept", "u: never measured"]
    # a second call changes nothing; with s unfinished too, every row is kept as it now is
    assert study.refresh_docs(parts, {"s"}, root, write=True, claims=claims)[0] == []
    assert study.refresh_docs(parts, set(), root, write=True, claims=claims)[0] == []


CROSS = """
[[claims]]
name = "cross"
doc = "docs/C.md"

[[claims.claim]]
label = "z: offdiag vs none"
part = "s"
row = { data = "z", decor = "offdiag" }
column = "test acc @ sel."
against = { decor = "none" }

[[claims.claim]]
label = "a: offdiag vs none (one seed left)"
part = "s"
row = { data = "a", decor = "offdiag" }
column = "test acc @ sel."
against = { decor = "none" }
"""


def test_a_claims_table_has_its_own_marker_and_doc_and_a_p_between_any_two_rows(tmp_path):
    """[[claims]]: a second claim table (its name is its marker); a claim with `against` and no `p` gets the
    Welch p of its two rows from summary.csv's means, stds and seed counts (– with fewer than 2 seeds)."""
    from scipy.stats import ttest_ind_from_stats

    root = headline_root(tmp_path)
    decl = root / "sims" / "study.toml"
    decl.write_text(decl.read_text() + CROSS)
    (root / "docs" / "C.md").write_text("# C\n\n<!-- study:cross -->\n<!-- /study:cross -->\n")
    parts, claims = study.load_study(decl, root)
    assert [(c.marker, c.doc.name) for c in claims] == [("headline", "R.md"), ("cross", "C.md")]
    study.check_markers(parts, claims)
    _, _, errors = study.refresh_docs(parts, {"s"}, root, write=True, claims=claims)
    assert errors == []
    p = ttest_ind_from_stats(0.6004, 0.01, 2, 0.41, 0.01, 2, equal_var=False).pvalue
    text = (root / "docs" / "C.md").read_text()
    assert f"| z: offdiag vs none | 0.600 ± 0.010 vs 0.410 ± 0.010 | +19.0 | {p:.3f} | `sims/s.toml` |" in text
    assert "| a: offdiag vs none (one seed left) | 0.330 vs 0.310 ± 0.010 | +2.0 | – | `sims/s.toml` |" in text
    decl.write_text(decl.read_text().replace('name = "cross"', 'name = "s"'))
    with pytest.raises(ConfigError, match=r"\[\[claims\]\] s: name 's' is already a part's or a claim table's"):
        study.load_study(decl, root)


def test_a_claim_that_picks_no_single_row_is_an_error_and_keeps_its_row(tmp_path):
    root = headline_root(tmp_path)
    decl = root / "sims" / "study.toml"
    decl.write_text(decl.read_text().replace('row = { data = "z", decor = "offdiag" }', 'row = { decor = "offdiag" }'))
    parts, claims = study.load_study(decl, root)
    _, _, errors = study.refresh_docs(parts, {"s"}, root, write=True, claims=claims)
    assert errors == ["headline claim 'z: offdiag vs centring' (part s): 2 rows of summary.md match "
                      "{'decor': 'offdiag'}; give labels that pick exactly one"]
    assert "| z: offdiag vs centring | 0.1 vs 0.1 | +0.0 | 1 | `old` |" in (root / "docs" / "R.md").read_text()


@pytest.mark.parametrize("extra, message", [
    ('against = { decor = "none" }\np = "p test"\n', "p = 'p test' tests 'test acc @ sel.', not column = 'val_acc'"),
    ('p = "p"\n', "p = 'p' is against the sweep's baseline {'decor': 'centre'}; set against = that baseline"),
    ('against = { data = "z" }\np = "p"\n', "p = 'p' is against the sweep's baseline"),
    ('against = { decor = "centre", data = "z" }\np = "p"\n', "p = 'p' is against the sweep's baseline"),
    ('figure = "x"\n', "unknown key 'figure'"),
])
def test_a_p_value_is_quoted_only_beside_the_row_it_was_computed_against(tmp_path, extra, message):
    root = headline_root(tmp_path, extra)
    with pytest.raises(ConfigError, match="claim 2") as e:
        study.load_study(root / "sims" / "study.toml", root)
    assert message in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------- acceptance targets on claims (no runs)
def goal(label: str, row: str, column: str, target: str = "", against: str = "", part: str = "s") -> str:
    """One [[claims.claim]] of the goals table."""
    return (f'\n[[claims.claim]]\nlabel = "{label}"\npart = "{part}"\nrow = {row}\ncolumn = "{column}"\n'
            + (f"against = {against}\n" if against else "") + (f"target = {target}\n" if target else ""))


Z_OFFDIAG, Z_CENTRE, Z_NONE = '{ data = "z", decor = "offdiag" }', '{ data = "z", decor = "centre" }', \
    '{ data = "z", decor = "none" }'
A_OFFDIAG = '{ data = "a", decor = "offdiag" }'
# label → (declaration, the target and met cells it must get)
GOALS = {
    "mean ≥, met": (goal("mean ≥, met", Z_OFFDIAG, "test acc @ sel.", "{ at_least = 0.6 }"), ["≥ 0.60", "yes"]),
    # printed 0.500, but the unrounded mean is .4996
    "mean ≥, not met": (goal("mean ≥, not met", Z_CENTRE, "test acc @ sel.", "{ at_least = 0.5 }"), ["≥ 0.50", "no"]),
    "mean ≤, met": (goal("mean ≤, met", Z_NONE, "val best − last", "{ at_most = 0.03 }"), ["≤ 0.03", "yes"]),
    "mean ≤, not met": (goal("mean ≤, not met", Z_OFFDIAG, "val best − last", "{ at_most = 0.03 }"),
                        ["≤ 0.03", "no"]),
    "Δ ≥, met": (goal("Δ ≥, met", Z_OFFDIAG, "test acc @ sel.", "{ delta_at_least = 10 }", '{ decor = "centre" }'),
                 ["Δ ≥ +10", "yes"]),
    # the Δ column shows +10.1; the unrounded difference is +10.08
    "Δ ≥, not met": (goal("Δ ≥, not met", Z_OFFDIAG, "test acc @ sel.", "{ delta_at_least = 10.1 }",
                          '{ decor = "centre" }'), ["Δ ≥ +10.1", "no"]),
    # (0.33 − 0.31) × 100 is 2.0000000000000018 in floats: still within 2; the cell escapes its | for Markdown
    "Δ within, met": (goal("Δ within, met", A_OFFDIAG, "test acc @ sel.", "{ delta_within = 2 }", '{ decor = "none" }'),
                   ["\\|Δ\\| ≤ 2", "yes"]),
    "Δ within, not met": (goal("Δ within, not met", A_OFFDIAG, "test acc @ sel.", "{ delta_within = 1.5 }",
                            '{ decor = "none" }'), ["\\|Δ\\| ≤ 1.5", "no"]),
    "seeds, met": (goal("seeds, met", Z_OFFDIAG, "test acc (last)", "{ every_seed_at_least = 0.55 }"),
                   ["every seed ≥ 0.55", "yes (2 of 2 seeds)"]),
    "seeds, one below": (goal("seeds, one below", Z_OFFDIAG, "test acc (last)", "{ every_seed_at_least = 0.6 }"),
                         ["every seed ≥ 0.60", "no (1 of 2 seeds)"]),
    # at the best-validation epoch (epoch 1: .80, .75), not the last (.62, .58)
    "seeds @ sel., met": (goal("seeds @ sel., met", Z_OFFDIAG, "test acc @ sel.", "{ every_seed_at_least = 0.7 }"),
                          ["every seed ≥ 0.70", "yes (2 of 2 seeds)"]),
    "seeds of the metric, one diverged": (goal("seeds of the metric, one diverged", A_OFFDIAG, "val_acc",
                                               "{ every_seed_at_least = 0.1 }"),
                                          ["every seed ≥ 0.10", "no (1 of 2 seeds)"]),
    "seeds, one missing": (goal("seeds, one missing", Z_NONE, "test acc (last)", "{ every_seed_at_least = 0.1 }"),
                           ["every seed ≥ 0.10", "no (1 of 2 seeds)"]),
    "no target": (goal("no target", Z_OFFDIAG, "test acc @ sel."), ["", ""]),
    # part u did not finish: the doc's row, its verdict kept while the target is the one it was made against
    "u: kept": (goal("u: kept", '{ decor = "none" }', "test acc @ sel.", "{ at_least = 0.7 }", part="u"),
                ["≥ 0.70", "yes"]),
    "u: target changed": (goal("u: target changed", '{ decor = "none" }', "test acc @ sel.", "{ at_least = 0.8 }",
                               part="u"), ["≥ 0.80", ""]),
    "u: Δ within, kept": (goal("u: Δ within, kept", '{ decor = "none" }', "test acc @ sel.", "{ delta_within = 2 }",
                               '{ decor = "centre" }', part="u"), ["\\|Δ\\| ≤ 2", "no"]),
}
GOALS_DOC = """# G

<!-- study:goals -->

| claim | measured | Δ (points) | p | target | met | source |
| --- | --- | --- | --- | --- | --- | --- |
| u: kept | 0.777 ± 0.001 |  |  | ≥ 0.70 | yes | `sims/u.toml` |
| u: target changed | 0.777 ± 0.001 |  |  | ≥ 0.70 | yes | `sims/u.toml` |
| u: Δ within, kept | 0.777 vs 0.700 | +7.7 | 0.010 | \\|Δ\\| ≤ 2 | no | `sims/u.toml` |

<!-- /study:goals -->
"""


def write_runs(part, runs: dict[tuple[str, str, int], tuple[float, float] | str]) -> None:
    """Hand-made run folders of a sweep part: (decor, data, seed) → (test acc at epoch 1, the best-validation
    epoch; test acc at the other epochs, the last) or "diverged"."""
    for t in part.spec.trials(part.out):
        value = runs.get((dict(t.setting)["decor"], dict(t.setting)["data"], t.seed))
        if value is None:
            continue
        t.out.mkdir(parents=True)
        if value == "diverged":
            (t.out / "diverged.json").write_text("{}")
            continue
        epochs = [{"epoch": e, "val_acc": 0.9 if e == 1 else 0.5, "test_acc": value[0] if e == 1 else value[1]}
                  for e in range(1, t.config.epochs + 1)]
        (t.out / "results.json").write_text(json.dumps({"epochs": epochs, "summary": {"best_val_epoch": 1}}))


def block_rows(path: Path, marker: str) -> list[list[str]]:
    """The cells of the generated table in ``marker``'s block (header first, the --- line left out)."""
    text = path.read_text()
    inner = text.split(f"<!-- study:{marker} -->\n\n")[1].split(f"\n\n<!-- /study:{marker} -->")[0]
    return [study._cells(line) for i, line in enumerate(inner.splitlines()) if i != 1]


def test_targets_are_judged_on_unrounded_means_differences_and_every_seed(tmp_path):
    """Each target kind met and not met, in a [[claims]] table: the target and met columns after p, empty for a
    claim without a target, a kept row (its part unfinished) keeps its verdict only for an unchanged target."""
    root = headline_root(tmp_path)
    decl = root / "sims" / "study.toml"
    decl.write_text(decl.read_text() + '\n[[claims]]\nname = "goals"\ndoc = "docs/G.md"\n'
                    + "".join(d for d, _ in GOALS.values()))
    (root / "docs" / "G.md").write_text(GOALS_DOC)
    parts, claims = study.load_study(decl, root)
    write_runs(parts[0], {("offdiag", "z", 0): (0.80, 0.62), ("offdiag", "z", 1): (0.75, 0.58),
                          ("offdiag", "a", 0): (0.5, 0.5), ("offdiag", "a", 1): "diverged",
                          ("none", "z", 0): (0.5, 0.5)})
    study.check_markers(parts, claims)
    _, kept, errors = study.refresh_docs(parts, {"s"}, root, write=True, claims=claims)
    assert errors == []
    rows = block_rows(root / "docs" / "G.md", "goals")
    assert rows[0] == study.TARGET_HEADER == ["claim", "measured", "Δ (points)", "p", "target", "met", "source"]
    assert {r[0]: r[4:6] for r in rows[1:]} == {label: cells for label, (_, cells) in GOALS.items()}
    by_label = {r[0]: r for r in rows[1:]}
    assert by_label["Δ ≥, not met"][1:3] == ["0.600 ± 0.010 vs 0.500 ± 0.020", "+10.1"]
    assert by_label["u: kept"][1] == "0.777 ± 0.001" and by_label["u: kept"][6] == "`sims/u.toml`"
    assert by_label["no target"][6] == "`sims/s.toml`"
    assert by_label["u: Δ within, kept"][1:4] == ["0.777 vs 0.700", "+7.7", "0.010"]
    assert [n.split("'")[1] for n in kept if "study:goals" in n] == ["u: kept", "u: target changed",
                                                                     "u: Δ within, kept"]
    # the headline has no target: its header is today's
    assert block_rows(root / "docs" / "R.md", "headline")[0] == study.HEADLINE_HEADER
    assert study.refresh_docs(parts, {"s"}, root, write=True, claims=claims)[0] == []  # nothing changes


def test_a_target_adds_its_columns_to_the_headline_and_kept_rows_move_with_the_header(tmp_path):
    """One target in the headline turns its 5 columns into 7 (the doc's kept rows fill the new header by column
    name; a never-measured row gets its target, no verdict); dropping it gives back today's header."""
    root = headline_root(tmp_path, "target = { at_least = 0.3 }\n")
    decl, doc = root / "sims" / "study.toml", root / "docs" / "R.md"
    parts, claims = study.load_study(decl, root)
    assert claims[0].claims[1].target == study.Target("at_least", 0.3)
    assert study.refresh_docs(parts, {"s"}, root, write=True, claims=claims)[2] == []
    assert block_rows(doc, "headline") == [
        ["claim", "measured", "Δ (points)", "p", "target", "met", "source"],
        ["z: offdiag vs centring", "0.600 ± 0.010 vs 0.500 ± 0.020", "+10.1", "0.004", "", "", "`sims/s.toml`"],
        ["a: centring", "0.320 ± 0.010", "", "", "≥ 0.30", "yes", "`sims/s.toml`"],
        ["u: kept", "0.777 ± 0.001", "", "", "", "", "`sims/u.toml`"],  # the doc's 5-column row
        ["u: never measured", "not measured yet", "", "", "", "", "`sims/u.toml`"],
    ]
    decl.write_text(decl.read_text().replace("target = { at_least = 0.3 }\n", ""))
    parts, claims = study.load_study(decl, root)
    study.refresh_docs(parts, set(), root, write=True, claims=claims)  # every row kept, from the 7 columns
    assert block_rows(doc, "headline") == [
        study.HEADLINE_HEADER,
        ["z: offdiag vs centring", "0.600 ± 0.010 vs 0.500 ± 0.020", "+10.1", "0.004", "`sims/s.toml`"],
        ["a: centring", "0.320 ± 0.010", "", "", "`sims/s.toml`"],
        ["u: kept", "0.777 ± 0.001", "", "", "`sims/u.toml`"],
        ["u: never measured", "not measured yet", "", "", "`sims/u.toml`"],
    ]


def test_target_text():
    assert [study.Target(k, b).text for k, b in [("at_least", 0.37), ("at_most", 0.03), ("delta_at_least", 15),
                                                  ("delta_within", 2), ("every_seed_at_least", 0.8),
                                                  ("at_least", 0.925), ("delta_at_least", -2.5)]] == [
        "≥ 0.37", "≤ 0.03", "Δ ≥ +15", "|Δ| ≤ 2", "every seed ≥ 0.80", "≥ 0.925", "Δ ≥ -2.5"]


KINDS = "give one of at_least, at_most, delta_at_least, delta_within, every_seed_at_least"
SCRIPT_PART = ('[[part]]\nname = "t"\nscript = "sims/t.py"\nout = "sims/out/t"\nstatus = []\ntables_only = []\n'
               'outputs = ["summary.md"]\n')


@pytest.mark.parametrize("claim, message", [
    ('target = { at_lest = 0.3 }', f"target: unknown key 'at_lest'; {KINDS}"),
    ('target = { at_least = 0.3, at_most = 0.4 }', "target has 2 keys (at_least, at_most); give exactly one of"),
    ('target = {}', "target has 0 keys (none); give exactly one of"),
    ('target = { at_least = "0.3" }', "target at_least = '0.3' is not a number; write e.g. at_least = 0.9"),
    ('target = { at_least = true }', "target at_least = True is not a number"),
    ('target = { at_least = nan }', "target at_least = nan is not a number"),
    ('target = 0.3', "target must be a table such as target = { at_least = 0.9 }"),
    ('target = { delta_at_least = 5 }', "target delta_at_least bounds the difference from a reference row; add "
                                        "against = { column = \"value\" } to the claim"),
    ('target = { delta_within = 2 }', "target delta_within bounds the difference from a reference row; add against"),
    ('against = { decor = "none" }\ntarget = { delta_within = -1 }',
     "target delta_within = -1 bounds |Δ|: give a number >= 0"),
    ('column = "val best − last"\ntarget = { every_seed_at_least = 0.1 }',
     "target every_seed_at_least: column 'val best − last' has no per-seed figure; use column = one of "
     "'test acc (last)', 'test acc @ sel.', 'val_acc'"),
    ('column = "settings"\ntarget = { at_least = 0.1 }', "target at_least: column 'settings' has no unrounded mean in "
                                                         "summary.csv; use column = one of"),
    ('part = "t"\ntarget = { every_seed_at_least = 0.1 }', "target every_seed_at_least reads each seed's run, and "
                                                           "part t is a script part; use at_least"),
])
def test_a_bad_target_is_a_one_line_error_at_load_naming_the_claim(tmp_path, capsys, claim, message):
    root = headline_root(tmp_path)
    (root / "sims" / "t.py").write_text("")
    decl = root / "sims" / "study.toml"
    body = 'part = "s"\nrow = { data = "a", decor = "centre" }\ncolumn = "val_acc"\n'
    lines = dict.fromkeys(["part", "row", "column"])  # the claim's own keys replace the defaults
    for line in body.splitlines() + claim.splitlines():
        key = line.split(" = ")[0]
        lines[key if key in lines else line] = line
    decl.write_text(SCRIPT_PART + decl.read_text().replace(body, "\n".join(lines.values()) + "\n"))
    assert run(root) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "[headline] claim 2 ('a: centring'): " + message in err
