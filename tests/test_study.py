"""sims/study.py on a toy study (two tiny sweeps, one of them tuned, and a toy script part) on a real local Ray
cluster: every part runs in order, a second call trains nothing, a lost run is the only one redone, marker blocks
are replaced exactly, --tables-only never trains, and bad declarations or markers are one-line errors before any
run starts. Also benchmarks/time_to_accuracy.py's skip-when-measured logic on a synthetic JSON."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def _study():
    spec = importlib.util.spec_from_file_location("study", REPO / "sims" / "study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["study"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


study = _study()


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
    assert {c.part.name for c in headline.claims} >= {"correlated_tuned", "mnist1d_tuned", "paper_digits",
                                                      "paper_digits_code", "where_decorrelation_matters"}
    assert [p.name for p in parts][:3] == ["correlated_tuned", "mnist1d_tuned", "paper_digits"]
    assert {v.marker for p in parts for v in p.tables} >= {"correlated_tuned", "mnist1d_tuned", "paper_digits",
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

| decor | data | seeds | val_acc | p test | test acc @ sel. |
| --- | --- | --- | --- | --- | --- |
| none | z | 2/2 | 0.400 ± 0.010 | 0.020 | 0.410 ± 0.010 |
| none | a | 2/2 | 0.300 ± 0.010 | 0.500 | 0.310 ± 0.010 |
| centre | z | 2/2 | 0.500 ± 0.020 | – | 0.500 ± 0.020 |
| centre | a | 2/2 | 0.320 ± 0.010 | – | 0.320 ± 0.010 |
| offdiag | z | 2/2 | 0.600 ± 0.010 * | 0.004 | 0.600 ± 0.010 * |
| offdiag | a | 1/2 (1 diverged) | 0.330 | – | 0.330 |
"""

# unrounded means: offdiag z − centre z is +10.1 points here, not the +10.0 the rounded table would give
SUMMARY_CSV = """decor,data,seeds,done,diverged,test_acc_selected_mean,test_acc_selected_std
none,z,2,2,0,0.41,0.01
none,a,2,2,0,0.31,0.01
centre,z,2,2,0,0.4996,0.02
centre,a,2,2,0,0.32,0.01
offdiag,z,2,2,0,0.6004,0.01
offdiag,a,2,2,1,0.33,
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
