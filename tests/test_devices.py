"""Transfer-compound devices (Tiki-Taka v2, Chopped-TTv2, AGAD) driven by the analog backend: which knobs the
``device`` table reaches, and what the run's lr does on such a tile (sims/README_devices.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analogdecorr.backends.analog import PulsedUpdater
from analogdecorr.backends.presets import AnalogLinear, make_rpu_config
from analogdecorr.config import resolve
from analogdecorr.errors import ConfigError
from analogdecorr.recipes import builtin_recipes, load_recipe, recipe_name
from analogdecorr.sweep import config_key, load_sweep

COMPOUND = "ChoppedTTv2CapacitorPreset"
SIMS = Path(__file__).resolve().parents[1] / "sims"
#: recipe prefix -> the sweep file whose tuned rows wrote those recipes (sims/README_devices.md)
DEVICE_RECIPES = {"mnist1d-np-transfer": "devices_mnist1d.toml", "digits-np-transfer": "devices_digits.toml",
                  "np-mixedprec": "devices_mixedprec.toml",
                  "mnist1d-np-mixedprec": "devices_mixedprec_mnist1d50.toml",
                  "mnist1d-np-buffer": "devices_mnist1d_buffer.toml"}


def test_the_device_table_reaches_the_compound_its_groups_and_the_rpu_config_groups():
    cfg = make_rpu_config(COMPOUND, {"fast_lr": 0.1, "transfer_lr": 20.0, "in_chop_prob": 0.02,
                                     "dw_min": 0.004, "transfer_update": {"desired_bl": 2},
                                     "mapping": {"weight_scaling_omega": 1.0}, "update": {"desired_bl": 10}})
    dev = cfg.device
    assert (dev.fast_lr, dev.transfer_lr, dev.in_chop_prob) == (0.1, 20.0, 0.02)  # compound fields
    assert [d.dw_min for d in dev.unit_cell_devices] == [0.004, 0.004]  # sub-device field: both devices
    assert dev.transfer_update.desired_bl == 2 and cfg.update.desired_bl == 10  # nested group, rpu group
    assert cfg.mapping.weight_scaling_omega == 1.0
    fresh = make_rpu_config(COMPOUND)
    assert fresh.mapping.weight_scaling_omega == 0.0 and fresh.update.desired_bl == 31  # nothing leaks
    # the update= argument wins over the table's update group (the simulator check relies on it)
    assert make_rpu_config(COMPOUND, {"update": {"desired_bl": 10}}, update={"desired_bl": 5}).update.desired_bl == 5


def test_unit_cell_devices_overrides_each_sub_device_on_its_own():
    """The fast device first, the visible one last; a shared key still reaches both, {} leaves one alone."""
    cfg = make_rpu_config("AGADReRamESPreset", {"dw_min": 0.002, "unit_cell_devices": [
        {}, {"dw_min_std": 0.3, "write_noise_std": 0.0}]})
    fast, slow = cfg.device.unit_cell_devices
    assert (fast.dw_min_std, fast.write_noise_std) == (5.0, 75.0)  # the preset's ReRamES
    assert (slow.dw_min_std, slow.write_noise_std) == (0.3, 0.0)
    assert fast.dw_min == slow.dw_min == 0.002
    with pytest.raises(ConfigError, match=r"has 1 tables but DynamicTransferCompound has 2 sub-devices"):
        make_rpu_config("AGADReRamESPreset", {"unit_cell_devices": [{}]})
    with pytest.raises(ConfigError, match=r"unit_cell_devices must be a list of tables"):
        make_rpu_config("AGADReRamESPreset", {"unit_cell_devices": {"dw_min": 1}})
    with pytest.raises(ConfigError, match=r"unknown device parameter 'dw_mni'"):
        make_rpu_config("AGADReRamESPreset", {"unit_cell_devices": [{}, {"dw_mni": 1}]})


@pytest.mark.parametrize(("device", "pattern"), [
    ({"mapping": {"weight_scaling_omegaa": 1.0}}, r"unknown mapping field 'weight_scaling_omegaa'.*"
                                                  r"did you mean 'weight_scaling_omega'"),
    ({"transfer_update": {"desired_bll": 1}}, r"unknown device parameter \(transfer_update\) 'desired_bll'.*"
                                              r"did you mean 'desired_bl'"),
    ({"update": {"desired_bl": "many"}}, r"update.desired_bl must be a number, got 'many'"),
])
def test_a_bad_group_key_is_one_error_naming_it(device, pattern):
    with pytest.raises(ConfigError, match=pattern):
        make_rpu_config(COMPOUND, device)


def test_weight_scaling_maps_the_largest_weight_to_omega_and_reads_back_exactly():
    """omega 0.5: inside every Capacitor device's bounds (±1 with 7 % device-to-device spread), so nothing clips."""
    torch.manual_seed(0)
    layer = AnalogLinear(8, 4, rpu_config=make_rpu_config(COMPOUND, {"mapping": {"weight_scaling_omega": 0.5}}))
    w = 0.1 * torch.randn(4, 8)
    layer.set_weights(w)
    got, _ = layer.get_weights()
    slow = next(layer.analog_tiles()).get_hidden_parameters()["hidden_weights_1"]  # conductances, visible device
    assert torch.allclose(got, w, atol=1e-6)
    assert slow.abs().max().item() == pytest.approx(0.5, abs=1e-6)  # max |w| sits at omega, not at 0.1·max


def test_the_run_lr_scales_only_the_transfer_the_fast_lr_drives_the_fast_device():
    """With auto_scale (the presets' setting) the fast device's pulses come from fast_lr alone; the run's lr
    (PulsedUpdater.lr, what the schedule sets) multiplies transfer_lr, i.e. how fast the visible weights move."""
    torch.manual_seed(0)
    z, d = torch.randn(32, 8), 0.01 * torch.randn(32, 4)
    moved = {}
    for lr in (1e-9, 1.0):
        layer = AnalogLinear(8, 4, bias=False, rpu_config=make_rpu_config(
            COMPOUND, {"fast_lr": 0.5, "transfer_lr": 1.0, "in_chop_prob": 0.0}))
        w0 = 0.1 * torch.ones(4, 8)
        layer.set_weights(w0)
        updater = PulsedUpdater(lr)
        for _ in range(20):
            updater.apply(layer, z, d)
        hidden = next(layer.analog_tiles()).get_hidden_parameters()
        moved[lr] = (hidden["hidden_weights_0"].abs().mean().item(), (layer.get_weights()[0] - w0).abs().max().item())
    (fast_small, visible_small), (fast_big, visible_big) = moved[1e-9], moved[1.0]
    assert fast_small > 0.01 and fast_big > 0.01  # the fast device learns at either lr
    assert visible_small < 1e-4 < 0.01 < visible_big  # the visible weights move only with the run's lr


@pytest.mark.parametrize(("prefix", "sweep"), sorted(DEVICE_RECIPES.items()))
def test_the_device_recipes_are_settings_their_sweep_searched(prefix, sweep, tmp_path):
    """Each device recipe is one of its sweep's search runs (search seed 100) and is named after that run's
    row: a recipe is what the validation search chose, not a hand edit."""
    spec = load_sweep(SIMS / sweep)
    search = {t.key: t for t in spec.trials(tmp_path)}
    recipes = [name for name in builtin_recipes() if name.startswith(prefix + "-")]
    assert len(recipes) == len({tuple(dict(t.setting)[a] for a in spec.row_axes) for t in search.values()})
    for name in recipes:
        values = {k: v for k, v in load_recipe(name).items() if k != "out"}
        trial = search[config_key(resolve(values, {"seed": spec.tune.seeds[0]}))]
        assert name == recipe_name(prefix, {a: dict(trial.setting)[a] for a in spec.row_axes})
