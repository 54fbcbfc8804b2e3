"""RunConfig: defaults, precedence, coercion, validation messages, TOML round trip, resume fingerprint."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analogdecorr import config
from analogdecorr.checkpoint import describe_difference, differing_keys
from analogdecorr.config import (
    ACTIVATIONS,
    FIELD_HELP,
    RESUMABLE_CHANGES,
    RunConfig,
    load_config,
    load_toml,
    resolve,
    to_toml,
)
from analogdecorr.errors import ConfigError


def _error(file_values=None, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(file_values or {}, overrides or {})
    return str(info.value)


# ------------------------------------------------------------------------------------------ defaults
def test_defaults_are_the_main_job():
    cfg = resolve({}, {})
    assert cfg == RunConfig()
    assert (cfg.dataset, cfg.rule, cfg.decor, cfg.model) == ("digits", "np", "scaled", "mlp")
    assert cfg.hidden == (1000, 1000, 1000, 1000) and cfg.conv_channels == (16, 32)
    assert (cfg.lr, cfg.decor_lr, cfg.sigma, cfg.sample_frac, cfg.kappa) == (1e-4, 1e-4, 1e-3, 0.1, 0.5)
    assert (cfg.batch_size, cfg.epochs, cfg.seed, cfg.fidelity_steps) == (64, 10, 0, 10)
    assert cfg.drift_times == (1, 3600, 86400, 2592000, 31536000)
    assert cfg.device == {} and cfg.io == {} and cfg.data_dir is None
    assert cfg.backend == "float" and cfg.preset == "IdealizedPreset" and cfg.drift_compensation is True


def test_every_field_has_one_line_help():
    names = [f.name for f in dataclasses.fields(RunConfig)]
    assert sorted(FIELD_HELP) == sorted(names)
    for name, text in FIELD_HELP.items():
        assert text and "\n" not in text and len(text) < 120, name


def test_frozen_and_json_able():
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["hidden"] == [1000, 1000, 1000, 1000] and d["device"] == {}
    assert set(d) == {f.name for f in dataclasses.fields(RunConfig)}


def test_constants_match_the_modules_that_use_them():
    from analogdecorr import data, models

    assert config.DATASETS == data.DATASETS
    assert set(ACTIVATIONS) == set(models.ACTIVATIONS)


# ---------------------------------------------------------------------------------------- precedence
def test_overrides_beat_file_values_beat_defaults():
    file_values = {"lr": 1e-3, "epochs": 5, "rule": "bp"}
    cfg = resolve(file_values, {"lr": 2e-3, "epochs": None, "batch_size": None})
    assert cfg.lr == 2e-3  # override wins
    assert cfg.epochs == 5  # None = flag not given: the file value stays
    assert cfg.rule == "bp"  # only in the file
    assert cfg.batch_size == 64  # neither: default
    assert resolve({}, {"epochs": 3}).epochs == 3


def test_dashed_keys_and_load_config(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('decor-lr = 3e-4\nrule = "fa"\n')
    cfg = load_config(path, {"sample-frac": "0.5"})
    assert (cfg.decor_lr, cfg.rule, cfg.sample_frac) == (3e-4, "fa", 0.5)
    assert load_config(None, {"epochs": 2}).epochs == 2


def test_resolve_copies_tables():
    device = {"w_noise": 0.01}
    cfg = resolve({"device": device}, {})
    device["w_noise"] = 1.0
    assert cfg.device == {"w_noise": 0.01}


# ------------------------------------------------------------------------------------------ coercion
@pytest.mark.parametrize(
    "value, expected",
    [("1000,1000", (1000, 1000)), ("64 32", (64, 32)), ("[32, 16]", (32, 16)), ([8, 4, 2], (8, 4, 2)),
     ((5,), (5,)), (7, (7,)), ([16.0], (16,))],
)
def test_hidden_coercion(value, expected):
    cfg = resolve({}, {"hidden": value})
    assert cfg.hidden == expected and all(type(h) is int for h in cfg.hidden)


def test_cli_strings_are_coerced():
    """argparse hands every flag over as a string; JSON for the tables."""
    cfg = resolve({}, {"lr": "0.01", "epochs": "2", "seed": "7", "drift_times": "1,60,3600.5",
                       "device": '{"w_noise": 0.01}', "scale_free": "true", "data_dir": "", "rule": "BP"})
    assert cfg.lr == 0.01 and type(cfg.lr) is float
    assert (cfg.epochs, cfg.seed) == (2, 7)
    assert cfg.drift_times == (1, 60, 3600.5)
    assert cfg.device == {"w_noise": 0.01} and cfg.scale_free is True
    assert cfg.data_dir is None and cfg.rule == "bp"


def test_ints_for_floats_and_integral_floats_for_ints():
    cfg = resolve({"lr": 1, "epochs": 3.0, "batch_size": "32.0"}, {})
    assert cfg.lr == 1.0 and type(cfg.lr) is float
    assert cfg.epochs == 3 and type(cfg.epochs) is int and cfg.batch_size == 32


@pytest.mark.parametrize(
    "key, value",
    [("epochs", 2.5), ("epochs", "ten"), ("epochs", True), ("lr", "fast"), ("lr", True),
     ("scale_free", "maybe"), ("rule", 3), ("hidden", "10,x"), ("hidden", {"a": 1}),
     ("drift_times", "1,soon"), ("out", 5)],
)
def test_wrong_types_name_the_key(key, value):
    msg = _error(overrides={key: value})
    assert key in msg and (repr(value) in msg or str(value) in msg)


# ------------------------------------------------------------------------------------- unknown keys
@pytest.mark.parametrize(
    "key, closest",
    [("lrr", "lr"), ("decor_rl", "decor_lr"), ("hiden", "hidden"), ("sampel-frac", "sample_frac"),
     ("activaton", "activation"), ("batchsize", "batch_size")],
)
def test_unknown_key_names_key_and_closest(key, closest):
    for where in ("file", "override"):
        msg = _error({key: 1}) if where == "file" else _error(overrides={key: 1})
        assert repr(key) in msg and f"did you mean {closest!r}" in msg


def test_unknown_key_without_close_match_lists_valid_keys():
    msg = _error({"xyzzy_plugh": 1})
    assert "'xyzzy_plugh'" in msg and "sample_frac" in msg and "decor_lr" in msg


# --------------------------------------------------------------------------------------- choices
@pytest.mark.parametrize(
    "key, bad, closest",
    [("rule", "nq", "np"), ("rule", "dfaa", "dfa"), ("decor", "scaeld", "scaled"),
     ("decor", "whitne", "whiten"), ("activation", "leaky-relu", "leaky_relu"),
     ("activation", "gelu2", "gelu"),
     ("dataset", "fashionmnist", "fashion_mnist"), ("dataset", "mnist_1d", "mnist1d"),
     ("optimizer", "adm", "adam"),
     ("lr_schedule", "cosin", "cosine"), ("backend", "analogue", "analog"), ("model", "mpl", "mlp"),
     ("model", "convnet", "conv")],
)
def test_unknown_choice_names_value_and_closest(key, bad, closest):
    msg = _error(overrides={key: bad})
    assert f"unknown {key} {bad!r}" in msg and f"(did you mean {closest!r}?)" in msg
    for valid in config.CHOICES[key]:
        assert valid in msg


@pytest.mark.parametrize("key", sorted(config.CHOICES))
def test_every_listed_choice_is_accepted(key):
    for value in config.CHOICES[key]:
        assert getattr(resolve({key: value}, {}), key) == value


# ------------------------------------------------------------------------------------ numeric ranges
@pytest.mark.parametrize(
    "key, value, words",
    [("sample_frac", 0, "(0, 1]"), ("sample_frac", 1.5, "(0, 1]"), ("sample_frac", "nan", "(0, 1]"),
     ("sample_frac", -0.1, "(0, 1]"),
     ("lr", 0, "> 0"), ("lr", -1e-3, "> 0"), ("lr", "nan", "> 0"), ("lr", "inf", "> 0"),
     ("decor_lr", 0.0, "> 0"), ("decor_lr", "nan", "> 0"), ("decor_lr", -1, "> 0"),
     ("sigma", 0, "> 0"), ("sigma", -1e-3, "> 0"), ("sigma", float("nan"), "> 0"),
     ("epochs", 0, "> 0"), ("epochs", -3, "> 0"), ("batch_size", 0, "> 0"), ("batch_size", -64, "> 0"),
     ("n_features", 0, "> 0"), ("n_samples", 0, "> 0"),
     ("weight_decay", -0.1, ">= 0"), ("weight_decay", "nan", ">= 0"),
     ("kappa", -0.1, "[0, 1]"), ("kappa", 1.1, "[0, 1]"), ("kappa", "nan", "[0, 1]"),
     ("momentum", 1.0, "[0, 1)"), ("momentum", -0.5, "[0, 1)"),
     ("seed", -1, ">= 0"), ("fidelity_steps", -1, ">= 0"),
     ("hidden", [100, 0], ">= 1"), ("hidden", [-5], ">= 1"), ("conv_channels", [16, 0], ">= 1"),
     ("hidden", [], "at least one hidden layer"), ("hidden", "", "at least one hidden layer"),
     ("conv_channels", [], "at least one"),
     ("drift_times", [0, 60], "> 0"), ("drift_times", [-1], "> 0"), ("drift_times", ["nan"], "> 0"),
     ("rho", "nan", "finite"), ("out", "", "run folder"), ("preset", " ", "preset")],
)
def test_invalid_values_name_the_key_and_the_range(key, value, words):
    msg = _error(overrides={key: value})
    assert key in msg and words in msg


def test_valid_edges_are_accepted():
    cfg = resolve({}, {"sample_frac": 1.0, "kappa": 0.0, "weight_decay": 0.0, "momentum": 0.0, "seed": 0,
                       "fidelity_steps": 0, "drift_times": [], "hidden": [1]})
    assert cfg.sample_frac == 1.0 and cfg.drift_times == () and cfg.hidden == (1,)
    assert resolve({}, {"kappa": 1}).kappa == 1.0


def test_rho_range_depends_on_n_features_for_the_correlated_dataset():
    assert resolve({"dataset": "correlated", "rho": -0.1, "n_features": 8}, {}).rho == -0.1
    msg = _error({"dataset": "correlated", "rho": -0.5, "n_features": 8})
    assert "rho" in msg and "n_features=8" in msg
    assert "rho" in _error({"dataset": "correlated", "rho": 1.0})


@pytest.mark.parametrize("key", ["device", "io"])
@pytest.mark.parametrize("value", [3, "not json", [1, 2], "[1, 2]"])
def test_device_and_io_must_be_tables(key, value):
    msg = _error(overrides={key: value})
    assert key in msg and "table" in msg


def test_device_table_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('backend = "analog"\n[device]\nw_noise = 0.02\n[io]\nout_noise = 0.0\n')
    cfg = resolve(load_toml(path), {})
    assert cfg.device == {"w_noise": 0.02} and cfg.io == {"out_noise": 0.0}


# ------------------------------------------------------------------------------------------ TOML
def test_load_toml_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="folder"):
        load_toml(tmp_path)


def test_load_toml_parse_error_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('lr = 1e-4\nrule = np\n')
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    msg = str(info.value)
    assert "bad.toml" in msg and "line 2, column 8" in msg and "Invalid value" in msg

    path.write_text('hidden = [1, 2\n')
    with pytest.raises(ConfigError, match=r"line \d+, column \d+|end of the file"):
        load_toml(path)


def test_load_toml_non_utf8(tmp_path):
    path = tmp_path / "latin.toml"
    path.write_bytes('out = "r\xe9sultats"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="UTF-8"):
        load_toml(path)


def test_toml_round_trip(tmp_path):
    cfg = resolve({}, {
        "dataset": "correlated", "data_dir": "/data/x", "rho": -0.01, "hidden": [17, 5], "rule": "dfa",
        "decor": "kappa", "decor_lr": 3.5e-5, "scale_free": True, "kappa": 0.25, "optimizer": "sgd",
        "momentum": 0.9, "lr_schedule": "cosine", "out": 'runs/"quoted" \\ back', "backend": "analog",
        "preset": "EcRamPreset", "device": {"w_noise": 0.01, "dw_min": 1e-3, "flag": True, "name": "x y",
                                            "sub": {"a": 1}},
        "io": {"out_noise": 0.0, "inp_res": -1}, "drift_times": [0.5, 60], "drift_compensation": False,
        "epochs": 3, "seed": 11, "sigma": 1e-12, "weight_decay": 1e-300,
    })
    path = tmp_path / "run.toml"
    path.write_text(to_toml(cfg))
    back = resolve(load_toml(path), {})
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()
    assert resolve(load_toml(_write(tmp_path, to_toml(RunConfig()))), {}) == RunConfig()


def _write(tmp_path, text):
    p = tmp_path / "default.toml"
    p.write_text(text)
    return p


@settings(max_examples=60, deadline=None)
@given(lr=st.floats(min_value=1e-300, max_value=1e300), frac=st.floats(min_value=1e-9, max_value=1.0),
       hidden=st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=6),
       out=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
       .filter(str.strip))
def test_toml_round_trip_property(lr, frac, hidden, out):
    import tomllib

    cfg = resolve({}, {"lr": lr, "sample_frac": frac, "hidden": hidden, "out": out})
    assert resolve(tomllib.loads(to_toml(cfg)), {}) == cfg


# --------------------------------------------------------------------------------------- fingerprint
def test_fingerprint_leaves_out_run_length_and_location_only():
    fp = RunConfig().fingerprint()
    assert "epochs" not in fp and "out" not in fp
    for key in ("rule", "decor", "lr", "decor_lr", "hidden", "seed", "dataset", "backend", "device", "sigma"):
        assert key in fp
    assert set(fp) | RESUMABLE_CHANGES == {f.name for f in dataclasses.fields(RunConfig)}
    json.dumps(fp)
    longer = resolve({}, {"epochs": 50, "out": "elsewhere", "drift_times": [1]})
    assert differing_keys(RunConfig().fingerprint(), longer.fingerprint()) == []


def test_describe_difference_names_the_keys():
    a = RunConfig().fingerprint()
    b = resolve({}, {"rule": "bp", "lr": 1e-3, "hidden": [10]}).fingerprint()
    assert differing_keys(a, b) == ["hidden", "lr", "rule"]
    text = describe_difference(a, b)
    assert "rule: \"np\" (checkpoint) vs \"bp\" (now)" in text and "lr: 0.0001" in text and "hidden" in text
    assert "epochs" not in text and "decor" not in text


def test_differing_keys_edge_cases():
    a = {"lr": 1, "x": float("nan"), "flag": True, "t": (1, 2)}
    assert differing_keys(a, {"lr": 1.0, "x": math.nan, "flag": True, "t": [1, 2]}) == []
    assert differing_keys({"flag": 1}, {"flag": True}) == ["flag"]
    # a field added after the checkpoint was written: fine if it has its default, named otherwise
    old = RunConfig().fingerprint()
    del old["kappa"]
    assert differing_keys(old, RunConfig().fingerprint()) == []
    assert differing_keys(old, resolve({}, {"kappa": 0.9}).fingerprint()) == ["kappa"]
    assert "absent" in describe_difference(old, resolve({}, {"kappa": 0.9}).fingerprint())


def test_analog_backend_takes_its_own_defaults_unless_set():
    from analogdecorr.backends.base import ANALOG_DEFAULTS

    cfg = resolve({}, {"backend": "analog"})
    assert cfg.optimizer == "sgd" and cfg.sigma == ANALOG_DEFAULTS["sigma"] and cfg.lr == ANALOG_DEFAULTS["lr"]
    cfg = resolve({"sigma": 0.05}, {"backend": "analog", "lr": "0.2"})
    assert cfg.sigma == 0.05 and cfg.lr == 0.2
    assert resolve({}, {}).optimizer == "adam"


# ------------------------------------------------------------------------------------ declarations
def test_every_field_is_declared_once_with_help_choices_check_and_resumability():
    """The field declarations are the only per-field tables: the views derive from them."""
    for f in dataclasses.fields(RunConfig):
        assert set(f.metadata) == {"help", "choices", "check", "resumable"}, f.name
        assert FIELD_HELP[f.name] == f.metadata["help"]
        assert (f.name in config.CHOICES) == (f.metadata["choices"] is not None)
        assert (f.name in RESUMABLE_CHANGES) == f.metadata["resumable"]


def test_choice_lists_come_from_the_modules_that_implement_them():
    from analogdecorr import decor, models, rules
    from analogdecorr.backends import base
    from analogdecorr.backends import float as float_backend
    from analogdecorr.fixed import format as fixed_format

    assert config.CHOICES["rule"] == rules.RULES
    assert set(decor.DECOR_RULES) | {decor.CENTRE, decor.ZCA, "none"} == set(config.CHOICES["decor"])
    assert config.CHOICES["decor"] == models.DECORS and config.CHOICES["model"] == models.MODELS
    assert config.CHOICES["backend"] == base.BACKENDS
    assert config.CHOICES["optimizer"] == float_backend.OPTIMIZERS
    assert config.CHOICES["unit_rounding"] == fixed_format.ROUNDING_MODES


def test_to_toml_refuses_a_value_toml_cannot_hold(tmp_path):
    cfg = resolve({}, {"device": {"levels": [1, None]}})
    with pytest.raises(ConfigError, match="cannot write this configuration as TOML"):
        to_toml(cfg)
    cfg = resolve({}, {"device": {"w_noise": None, "sub": {"a": None, "b": 2}}})  # a null is an absent key
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(cfg))
    assert resolve(load_toml(path), {}).device == {"sub": {"b": 2}}


def test_update_rank_belongs_to_the_analog_local_rules():
    assert "backend = \"analog\" with rule np, fa or dfa" in _error(overrides={"update_rank": 2})  # float backend
    assert "rule 'bp'" in _error(overrides={"update_rank": 2, "backend": "analog", "rule": "bp"})
    assert "integer >= 0" in _error(overrides={"update_rank": -1, "backend": "analog"})
    assert resolve({}, {"update_rank": 2, "backend": "analog", "rule": "fa"}).update_rank == 2
    assert resolve({}, {"update_rank": 0, "backend": "float", "rule": "bp"}).update_rank == 0


@pytest.mark.parametrize("numerics", ["stream", "fixed"])
def test_a_decor_lr_schedule_on_the_units_fixed_shift_is_refused(numerics):
    msg = _error(overrides={"decor_lr_schedule": "cosine", "decor_numerics": numerics})
    assert "decor_lr_schedule = 'cosine'" in msg and "fixed shift" in msg and "\n" not in msg
    assert resolve({}, {"decor_lr_schedule": "constant", "decor_numerics": numerics}).decor_numerics == numerics
