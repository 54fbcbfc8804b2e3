"""Named recipes: written from a tuned sweep's chosen.toml, listed one line each, run by name with
flags > --config > recipe > defaults, and an unknown name is one line naming the closest ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analogdecorr.cli import main
from analogdecorr.config import resolve, tomllib
from analogdecorr.errors import ConfigError
from analogdecorr.recipes import builtin_recipes, layer, load_recipe, recipe_name, recipes_dir, write_recipes
from analogdecorr.sweep import config_key, load_sweep

ROOT = Path(__file__).resolve().parents[1]

CHOSEN = """
sweep = "toy"
source = "sweep file sims/toy.toml"

[[row]]
name = "hardware=float decor=whiten"
metric = "val_acc"
select = "validation"
search_seeds = [100, 101]
search_mean = 0.61
search_std = 0.02
search_settings = 6
final_seeds = [0, 1]
final_done = 2
final_test_acc_mean = 0.6
final_test_acc_std = 0.01
row = { hardware = "float", decor = "whiten" }
chosen = { lr = "0.02", decor_lr = "0.001" }
[row.config]
dataset = "digits"
hidden = [8]
epochs = 1
rule = "np"
decor = "whiten"
lr = 0.02
decor_lr = 0.001
io = { out_noise = 0.0 }

[[row]]
name = "hardware=float decor=centre"
metric = "val_acc"
select = "validation"
search_seeds = [100, 101]
search_mean = 0.4
search_std = 0.0
search_settings = 3
final_seeds = [0, 1]
final_done = 1
row = { hardware = "float", decor = "centre" }
chosen = { lr = "0.01" }
config = { dataset = "digits", hidden = [8], epochs = 1, rule = "np", decor = "centre", lr = 0.01 }
"""


@pytest.fixture
def written(tmp_path):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "chosen.toml").write_text(CHOSEN)
    return write_recipes(tmp_path / "sweep", tmp_path / "recipes", command="analogdecorr recipes --write x")


def test_a_chosen_row_becomes_a_recipe_that_says_who_chose_it(written):
    assert [p.name for p in written] == ["toy-float-whiten.toml", "toy-float-centre.toml"]
    text = written[0].read_text()
    lines = text.splitlines()
    assert lines[0] == "# toy hardware=float decor=whiten: lr=0.02 decor_lr=0.001 (tuned on val_acc)"
    assert "tuned sweep 'toy' (sweep file sims/toy.toml), row hardware=float decor=whiten:" in lines[1]
    assert lines[2] == "# the setting with the best mean val_acc over search seeds [100, 101] (0.610 ± 0.020)"
    assert lines[3] == "# among 6 searched settings, each run at its best-validation epoch."
    assert "test accuracy at the selected epoch 0.600 ± 0.010" in text
    assert "Run it: analogdecorr train --recipe toy-float-whiten" in text
    values = tomllib.loads(text)
    assert values == {"dataset": "digits", "hidden": [8], "epochs": 1, "rule": "np", "decor": "whiten", "lr": 0.02,
                      "decor_lr": 0.001, "io": {"out_noise": 0.0}, "out": "runs/recipes/toy-float-whiten"}
    # a row whose finals are not all done gives no test figure
    assert "test accuracy" not in written[1].read_text()
    assert recipe_name("corr 0.9", {"a": "Exact Tile", "b": "np+decor"}) == "corr-0.9-exact-tile-np+decor"


def test_train_recipe_precedence_is_flags_then_config_then_recipe(written, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("lr = 0.05\nbatch_size = 32\nio = { inp_res = 0.01 }\n")
    out = tmp_path / "run"
    code = main(["train", "--recipe", str(written[0]), "--config", str(cfg), "--sigma", "0.2", "--out", str(out),
                 "--no-progress", "--no-plots"])
    assert code == 0, capsys.readouterr().err
    got = json.loads((out / "results.json").read_text())["config"]
    assert (got["decor"], got["decor_lr"], got["hidden"]) == ("whiten", 0.001, [8])  # the recipe
    assert (got["lr"], got["batch_size"]) == (0.05, 32)  # --config over the recipe
    assert got["sigma"] == 0.2  # a flag over both
    assert got["io"] == {"out_noise": 0.0, "inp_res": 0.01}  # tables merge key by key
    assert layer({"io": {"a": 1}, "decor_lr": 1}, {"io": {"b": 2}, "decor-lr": 3}) == {
        "io": {"a": 1, "b": 2}, "decor_lr": 3}


def test_recipes_write_command_and_listing(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "chosen.toml").write_text(CHOSEN)
    assert main(["recipes", "--write", str(tmp_path / "s"), "--into", str(tmp_path / "r"), "--prefix", "p"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith(f"recipe: {tmp_path / 'r' / 'p-float-whiten.toml'}  toy hardware=")
    assert "--prefix p`" in (tmp_path / "r" / "p-float-whiten.toml").read_text()
    assert main(["recipes", "--write", str(tmp_path / "s")]) == 2
    assert "needs --into" in capsys.readouterr().err
    assert main(["recipes", "--write", str(tmp_path / "nothing"), "--into", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no chosen.toml at") and err.count("\n") == 1
    # the listing: one line per packaged recipe, its first comment line
    assert main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(builtin_recipes())
    # listing imports no torch (it reads comment lines only)
    code = ("import sys; from analogdecorr.cli import main; main(['recipes']); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-500:]


def test_an_unknown_recipe_is_one_line_naming_the_closest(tmp_path, capsys, monkeypatch, written):
    monkeypatch.setattr("analogdecorr.recipes.recipes_dir", lambda: written[0].parent)
    assert main(["train", "--recipe", "toy-float-whitn", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown recipe 'toy-float-whitn' (closest: toy-float-whiten")
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()
    assert main(["recipes", "--show", "toy-float-centre"]) == 0
    assert capsys.readouterr().out == written[1].read_text()
    with pytest.raises(ConfigError, match="no recipe file nowhere/x.toml"):
        load_recipe("nowhere/x.toml")


def test_a_recipe_may_not_set_the_seed_or_unknown_keys(tmp_path):
    bad = tmp_path / "b.toml"
    bad.write_text("seed = 3\n")
    with pytest.raises(ConfigError, match="sets 'seed'; a recipe leaves the seed to the run"):
        load_recipe(bad)
    bad.write_text("lrr = 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'lrr' \(did you mean 'lr'\?\)"):
        load_recipe(bad)


def test_every_packaged_recipe_is_a_valid_documented_configuration():
    recipes = builtin_recipes()
    assert recipes and all(p.parent == recipes_dir() for p in recipes.values())
    for name, path in recipes.items():
        text = path.read_text()
        assert text.startswith("# ") and "Chosen by the tuned sweep" in text and "best mean val_acc" in text, name
        assert f"--recipe {name}" in text, name
        cfg = resolve(load_recipe(name), {})
        assert cfg.val_frac > 0 and cfg.out == f"runs/recipes/{name}", name
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.toml" in data["analogdecorr.recipes"]  # the wheel carries them


def test_the_corr09_recipes_are_settings_their_study_searched(tmp_path, capsys):
    """Each corr09 recipe with a search seed is one of sims/correlated_tuned.toml's search runs, and its row
    is the recipe's name: a recipe is what that study chose, not a hand edit."""
    spec = load_sweep(ROOT / "sims" / "correlated_tuned.toml")
    search = {t.key: t for t in spec.trials(tmp_path)}
    corr = {n: p for n, p in builtin_recipes().items() if n.startswith("corr09-")}
    assert len(corr) == 18  # 3 hardware x (5 decorrelation rows + the oracle)
    for name in corr:
        values = {k: v for k, v in load_recipe(name).items() if k != "out"}
        trial = search[config_key(resolve(values, {"seed": 100}))]
        assert name == "corr09-" + "-".join(dict(trial.setting)[a] for a in spec.row_axes)
    # run by name, a flag over the recipe
    out = tmp_path / "run"
    assert main(["train", "--recipe", "corr09-float-whiten", "--epochs", "1", "--out", str(out), "--no-progress",
                 "--no-plots"]) == 0, capsys.readouterr().err
    got = json.loads((out / "results.json").read_text())["config"]
    assert (got["dataset"], got["rho"], got["decor"], got["epochs"]) == ("correlated", 0.9, "whiten", 1)
    assert got["lr"] == tomllib.loads(corr["corr09-float-whiten"].read_text())["lr"]
