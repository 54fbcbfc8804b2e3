"""DirectReadAnalogLinear: reads outside autograd skip aihwkit's autograd Function and give the same numbers."""

from __future__ import annotations

import warnings

import pytest
import torch
from aihwkit.nn import AnalogLinear

from analogdecorr.backends.analog import DirectReadAnalogLinear, make_rpu_config, to_analog


def _pair(preset: str, d_in: int, d_out: int, **kwargs) -> tuple[AnalogLinear, DirectReadAnalogLinear]:
    """An AnalogLinear and a DirectReadAnalogLinear holding the same weights and bias."""
    torch.manual_seed(0)
    w, b = torch.rand(d_out, d_in) * 0.4 - 0.2, torch.rand(d_out) - 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = AnalogLinear(d_in, d_out, rpu_config=make_rpu_config(preset, **kwargs))
        direct = DirectReadAnalogLinear(d_in, d_out, rpu_config=make_rpu_config(preset, **kwargs))
    plain.set_weights(w, b)
    direct.set_weights(w, b)
    return plain, direct


@pytest.mark.parametrize("training", [True, False])
def test_direct_read_equals_autograd_read_exactly_without_noise(training: bool) -> None:
    plain, direct = _pair("EcRamPreset", 7, 5, perfect_io=True)
    plain.train(training)
    direct.train(training)
    x = torch.randn(9, 7)
    with torch.no_grad():
        got = direct(x)
    expected = plain(x)
    assert expected.grad_fn is not None  # the reference went through aihwkit's autograd Function
    assert got.grad_fn is None
    torch.testing.assert_close(got, expected.detach(), rtol=0, atol=0)


def test_direct_read_has_the_same_noise_statistics() -> None:
    """With the preset's noisy periphery each read differs; mean and spread over many reads agree."""
    plain, direct = _pair("EcRamPreset", 20, 6)
    x = torch.randn(4, 20).repeat(300, 1)  # 300 reads of the same 4 inputs
    with torch.no_grad():
        a = direct(x).reshape(300, 4, 6)
        b = plain(x).reshape(300, 4, 6)
    spread = b.std(0)
    assert float(spread.mean()) > 1e-3  # the reads are noisy, or this test proves nothing
    # the difference of two means of 300 reads has std √2·σ/√300; 6 of those is never reached by chance
    torch.testing.assert_close(a.mean(0), b.mean(0), rtol=0, atol=float(6 * 2**0.5 * spread.max() / 300**0.5))
    ratio = a.std(0).mean() / spread.mean()
    assert 0.85 < float(ratio) < 1.15


def test_autograd_path_is_kept_for_backprop() -> None:
    """With autograd on, the layer is aihwkit's own forward: gradients reach the input."""
    plain, direct = _pair("EcRamPreset", 6, 3, perfect_io=True)
    x = torch.randn(4, 6, requires_grad=True)
    direct(x).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    plain(x2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_tile_arrays_fall_back_to_the_autograd_read() -> None:
    """Above max_input_size (512) the layer is a TileModuleArray: not a plain tile, so aihwkit's forward runs."""
    plain, direct = _pair("EcRamPreset", 600, 3, perfect_io=True)
    x = torch.randn(5, 600)
    with torch.no_grad():
        torch.testing.assert_close(direct(x), plain(x), rtol=0, atol=0)


def test_to_analog_builds_direct_read_layers() -> None:
    net = torch.nn.Module()
    layer = torch.nn.Module()
    layer.linear = torch.nn.Linear(4, 2)
    net.layers = torch.nn.ModuleList([layer])
    to_analog(net, make_rpu_config("EcRamPreset", perfect_io=True))
    assert type(net.layers[0].linear) is DirectReadAnalogLinear
