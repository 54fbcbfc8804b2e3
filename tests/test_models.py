"""models.build_model: the paper code's MLP (``paper_mlp``) next to the package's own."""

from __future__ import annotations

import torch
from torch import nn

from analogdecorr.config import resolve
from analogdecorr.models import build_model
from analogdecorr.train import Trainer


def test_paper_mlp_is_the_mlp_without_the_last_hidden_activation() -> None:
    """Same layers and weights as ``mlp``; only hidden layer 4 (of 4) is linear, as in the paper's DenseNet."""
    torch.manual_seed(0)
    ours = build_model(resolve({}, {"hidden": "5,5,5,5", "decor": "none"}), (6,), 3)
    torch.manual_seed(0)
    paper = build_model(resolve({}, {"model": "paper_mlp", "hidden": "5,5,5,5", "decor": "none"}), (6,), 3)
    assert [type(layer.act) for layer in ours.layers] == [nn.LeakyReLU] * 4 + [nn.Identity]
    assert [type(layer.act) for layer in paper.layers] == [nn.LeakyReLU] * 3 + [nn.Identity] * 2
    for a, b in zip(ours.layers, paper.layers, strict=True):
        assert torch.equal(a.linear.weight, b.linear.weight)
    x = torch.randn(32, 6)
    # the paper net is the mlp with its 4th hidden activation skipped
    h = x
    for i, layer in enumerate(ours.layers):
        h = layer.linear(h)
        if i < 3:
            h = layer.act(h)
    assert torch.allclose(paper(x), h, atol=1e-6)
    assert not torch.allclose(ours(x), h, atol=1e-3)  # LeakyReLU changes the negative pre-activations


def test_paper_mlp_trains_on_flat_inputs(tmp_path) -> None:
    """The trainer flattens images for paper_mlp as for mlp (digits: 64 features, not 1x8x8)."""
    cfg = resolve({}, {"model": "paper_mlp", "dataset": "digits", "hidden": "8,8", "epochs": 1, "probe_size": 0,
                       "drift_times": "", "out": str(tmp_path / "run")})
    trainer = Trainer(cfg, progress=False, log=lambda message: None)
    assert trainer.data.input_shape == (64,)
    result = trainer.run()
    assert 0.0 <= result["epochs"][-1]["test_acc"] <= 1.0 and len(result["epochs"]) == 1
