"""Issue #11: every module the forward calls, on every model, with the value it really had."""

import copy
import pickle
import warnings

import pytest
import torch
from torch import nn

from fxtract import create_feature_extractor, get_graph_node_names
from fxtract._errors import FxtractError, StrategyError

from .oracle import assert_same, assert_unchanged, module_outputs, snapshot

# -- line 3: a mode that cannot run on the inputs ---------------------------------------------


class TrainNeedsTargets(nn.Module):
    """Like a detection model: train mode asserts that targets were given."""

    def __init__(self, data_dependent: bool):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.out = nn.Linear(4, 4)
        self.data_dependent = data_dependent

    def forward(self, x, targets=None):
        if self.training:
            # (len() of a Proxy: FX cannot trace the train mode either)
            assert targets is not None and len(targets) == len(x), (
                "targets should not be none when in training mode"
            )
        h = self.lin(x)
        if self.data_dependent and h.sum() > 1e9:  # neither fx nor export: hooks
            h = h * 0
        return self.out(h)


@pytest.mark.parametrize(("data_dependent", "strategy"), [(False, "export"), (True, "hooks")])
def test_failed_mode_names_warn_and_other_mode_listed(data_dependent, strategy):
    model, x = TrainNeedsTargets(data_dependent).eval(), torch.randn(2, 4)
    before = snapshot(model)
    with pytest.warns(
        UserWarning, match="in train mode on these example_inputs.*AssertionError: targets should"
    ):
        train, eval_ = get_graph_node_names(model, strategy=strategy, example_inputs=(x,))
    assert train == []
    assert {"lin", "out"} <= set(eval_)
    with pytest.warns(UserWarning, match="train mode"):
        auto = get_graph_node_names(model, example_inputs=(x,))
    assert auto == (train, eval_)
    assert_unchanged(model, before)


@pytest.mark.parametrize(("data_dependent", "strategy"), [(False, "export"), (False, "auto"), (True, "auto")])
def test_failed_mode_extractor_serves_the_other_mode(data_dependent, strategy):
    model, x = TrainNeedsTargets(data_dependent).eval(), torch.randn(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = create_feature_extractor(model, ["lin", "out"], strategy=strategy, example_inputs=(x,))
    assert ex.strategy == ("hooks" if data_dependent else "export")
    oracle = module_outputs(model, x)
    with torch.no_grad():
        out = ex(x)
    for n in ("lin", "out"):
        assert_same(oracle[n], out[n], n)
    if ex.strategy == "export":
        for copied in (ex, copy.deepcopy(ex), pickle.loads(pickle.dumps(ex))):
            with pytest.raises(StrategyError, match=r"cannot be exported in train mode.*strategy=.hooks."):
                copied.train()(x)


def test_auto_falls_back_when_the_current_mode_cannot_export():
    model, x = TrainNeedsTargets(False).train(), torch.randn(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = create_feature_extractor(model, ["lin"], example_inputs=((x, torch.zeros(2)),))
    assert ex.strategy == "hooks"  # the train graph cannot be exported, and train is the mode it starts in


def test_no_mode_runs_is_a_clear_error():
    model = TrainNeedsTargets(True)
    with pytest.raises(StrategyError, match="does not run on these example_inputs in either mode") as info:
        get_graph_node_names(model, strategy="hooks", example_inputs=(torch.randn(2, 5),))
    assert isinstance(info.value, FxtractError)


@pytest.mark.slow
def test_detection_model_in_train_mode_without_targets():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None
    ).eval()
    images = [torch.rand(3, 64, 64)]
    with pytest.warns(UserWarning, match="train mode.*targets should not be none"):
        train, eval_ = get_graph_node_names(model, example_inputs=(images,))
    assert train == [] and "backbone.body" in eval_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = create_feature_extractor(model, ["backbone.body"], example_inputs=(images,))
    oracle = module_outputs(model, images)
    with torch.no_grad():
        assert_same(oracle["backbone.body"], ex(images)["backbone.body"], "backbone.body")


# -- line 4: in-place writes (leaf writes and FX's augmented assignment: tests/test_defects.py) --

VIEW_WRITES = {
    "view_relu_": lambda t: t.view(-1).relu_(),
    "transpose_mul_": lambda t: t.transpose(0, 1).mul_(3),
    "unsqueeze_squeeze_zero_": lambda t: t.unsqueeze(0).squeeze(0)[0].zero_(),
}


class EditsThroughView(nn.Module):
    def __init__(self, edit):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.edit = edit

    def forward(self, x):
        t = self.lin(x)
        self.edit(t)
        return t


class ViewWriter(nn.Module):
    def __init__(self, edit):
        super().__init__()
        self.block = EditsThroughView(edit)
        self.out = nn.Linear(4, 4)

    def forward(self, x):
        return self.out(self.block(x)).relu_()


@pytest.mark.parametrize("strategy", ["fx", "export", "hooks", "auto"])
@pytest.mark.parametrize("edit", sorted(VIEW_WRITES))
def test_module_edits_its_result_through_a_view(edit, strategy):
    model, x = ViewWriter(VIEW_WRITES[edit]), torch.randn(2, 4)
    nodes = ["block", "block.lin", "out"]
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = create_feature_extractor(model, nodes, strategy=strategy, example_inputs=(x,))
    oracle = module_outputs(model, x)
    with torch.no_grad():
        out = ex(x)
    for n in nodes:
        assert_same(oracle[n], out[n], n)
    assert_unchanged(model, before)


# -- line 2: export lists a module call that computes nothing ---------------------------------


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(4, 4)
        self.norm = nn.Identity()  # crossvit's attn.norm
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return self.drop(self.norm(self.qkv(x)))


class WithIdentities(nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = nn.Identity()
        self.attn = Attention()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.attn(self.pre(x)))


def test_export_lists_calls_that_compute_nothing():
    model, x = WithIdentities().eval(), torch.randn(2, 4)
    fx_names = get_graph_node_names(model, strategy="fx")[1]
    export_names = get_graph_node_names(model, strategy="export", example_inputs=(x,))[1]
    assert export_names == fx_names == ["x", "pre", "attn.qkv", "attn.norm", "attn.drop", "head"]
    nodes = ["pre", "attn.norm", "attn.drop", "attn"]
    ex = create_feature_extractor(model, nodes, strategy="export", example_inputs=(x,))
    oracle = module_outputs(model, x)
    out = ex(x)
    for n in nodes:
        assert_same(oracle[n], out[n], n)


# -- line 1: the module calls inside an automatic leaf ----------------------------------------


class IntLevel(nn.Module):
    """Like timm nest's levels: an int() on a Proxy makes the whole level an automatic leaf."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc2(self.fc1(x)) * int(x.shape[0])


class WithIntLevel(nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = nn.Linear(4, 4)
        self.level = IntLevel()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.level(self.pre(x)).relu())


@pytest.mark.parametrize("with_inputs", [True, False])
def test_calls_inside_an_automatic_leaf(with_inputs):
    model, x = WithIntLevel(), torch.randn(2, 4)
    inputs = (x,) if with_inputs else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = get_graph_node_names(model, example_inputs=inputs)[1]
    told = any("listed from one forward with hooks" in str(w.message) for w in caught)
    assert told == with_inputs
    inside = ["level.fc1", "level.fc2"]
    assert names == ["x", "pre", "level", *(inside if with_inputs else []), "relu", "head"]
    nodes = ["pre", "level.fc1", "level.fc2", "level"]
    with pytest.warns(UserWarning, match="automatic leaves: level.fc1, level.fc2 inside level"):
        ex = create_feature_extractor(model, nodes, example_inputs=inputs)
    assert ex.strategy == ("export" if with_inputs else "hooks")
    oracle = module_outputs(model, x)
    out = ex(x)
    for n in nodes:
        assert_same(oracle[n], out[n], n)
