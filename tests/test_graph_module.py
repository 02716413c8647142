"""The inference module ``fxtract.extract`` runs: residual adds written into temporaries, values
bitwise those of the extractor's own graph, and nothing the model or a hook can see changed."""

from __future__ import annotations

import operator

import pytest
import torch
import torchvision

from fxtract import create_feature_extractor
from fxtract._graph_module import add_into_temporary, add_into_temporary_r, inference_module

from .models import Residuals, ReturnsBuffer


def _rewritten(module) -> int:
    return sum(
        n.op == "call_function" and n.target in (add_into_temporary, add_into_temporary_r)
        for n in module.graph.nodes
    )


@pytest.mark.parametrize(("name", "node", "adds"), [("resnet18", "layer4", 8), ("resnet50", "layer3", 13)])
def test_residual_adds_in_place_same_values(name, node, adds):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    ex = create_feature_extractor(model, [node, "layer1"])
    runner = inference_module(ex)
    assert _rewritten(runner) == adds
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        want, got = ex(x), runner(x)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert sum(n.target is operator.add for n in ex.graph.nodes) == adds  # the extractor is untouched


def test_adds_into_what_nobody_else_sees():
    model = Residuals().eval()
    names = [f"add_{i}" if i else "add" for i in range(8)]
    ex = create_feature_extractor(model, names, tracer_kwargs={"leaf_modules": [ReturnsBuffer]})
    runner = inference_module(ex)
    x = torch.randn(3, 4)
    with torch.inference_mode():
        want = ex(x)
        model.kept.clear()
        got = runner(x)
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert torch.equal(model.stored.offset, torch.ones(3, 4)), "an add wrote into the module's buffer"
    assert torch.equal(model.kept[0] + 2, got["add_6"]), "an add wrote into a tensor a hook keeps"


def test_with_grad_enabled_every_add_is_out_of_place():
    model = Residuals().eval()
    runner = inference_module(create_feature_extractor(model, ["add"]))
    x = torch.randn(3, 4, requires_grad=True)
    out = runner(x)["add"]
    out.sum().backward()  # an in-place add on a tensor autograd needs would raise here
    assert x.grad is not None


def test_not_an_fx_extractor_or_hooked_is_returned_as_is():
    model = torchvision.models.resnet18(weights=None).eval()
    hooks = create_feature_extractor(model, ["layer1"], strategy="hooks")
    assert inference_module(hooks) is hooks
    ex = create_feature_extractor(model, ["layer4"])
    ex.register_forward_hook(lambda *a: None)
    assert inference_module(ex) is ex
