"""Sweep files shipped in the package, run by name: `analogdecorr sweep demo`, `--list`, a path still works,
an unknown name is one line listing the built-in ones; every packaged sweep expands and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from analogdecorr.cli import main
from analogdecorr.config import tomllib
from analogdecorr.errors import ConfigError
from analogdecorr.sweep import load_sweep
from analogdecorr.sweep.builtin import builtin_dir, builtin_sweeps, resolve_sweep

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_is_packaged_and_listed(capsys):
    sweeps = builtin_sweeps()
    assert "demo" in sweeps and sweeps["demo"].parent == builtin_dir()
    assert main(["sweep", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(sweeps) and lines[0].split()[0] == next(iter(sweeps))
    demo = next(line for line in lines if line.startswith("demo "))
    assert "decorrelation" in demo  # the file's first comment line says what it runs
    # the wheel carries them: pyproject's package data names the folder
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "sweeps/*.toml" in data["analogdecorr"]


def test_every_builtin_sweep_expands_to_valid_runs(tmp_path):
    for name, path in builtin_sweeps().items():
        trials = load_sweep(path).trials(tmp_path / name)
        assert trials and len({t.key for t in trials}) == len(trials), name


def test_a_path_wins_over_a_name_and_still_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("[base]\ndataset = 'digits'\n")  # a file called demo in the working folder
    assert resolve_sweep("demo") == Path("demo")
    assert resolve_sweep(str(ROOT / "sims" / "example.toml")) == ROOT / "sims" / "example.toml"
    (tmp_path / "demo").unlink()
    assert resolve_sweep("demo") == builtin_sweeps()["demo"]


@pytest.mark.parametrize("name, start", [("dmeo", "'dmeo' is neither a sweep file nor a built-in sweep"),
                                         ("sims/nothere.toml", "no sweep file sims/nothere.toml")])
def test_an_unknown_name_is_one_line_listing_the_builtin_names(name, start, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError):
        resolve_sweep(name)
    assert main(["sweep", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {start}") and err.count("\n") == 1
    assert "built-in sweeps: " + ", ".join(builtin_sweeps()) in err


def test_no_sweep_and_no_list_is_an_error(capsys):
    assert main(["sweep"]) == 2
    assert "analogdecorr sweep demo" in capsys.readouterr().err


def test_the_readme_main_job_is_the_demo_and_ci_runs_the_same_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme[readme.index("## Quick start"):readme.index("## What you can do")]
    first = quick.split("```bash\n")[1].split("\n```")[0].strip()
    assert first.endswith("&& .venv/bin/analogdecorr sweep demo")
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "pip install" in line]
    assert len(ci) == 1
    # CI differs only by quiet apt/pip output and no progress bar
    quiet = ci[0].replace(" -q", "").removesuffix(" --no-progress")
    assert quiet == first
