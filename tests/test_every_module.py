"""Issue #11: every module the forward calls, on every model, with the value it really had."""

import copy
import json
import os
import pickle
import warnings

import pytest
import torch
from torch import nn

from fxtract import create_feature_extractor, describe, get_graph_node_names
from fxtract._errors import FxtractError, StrategyError

from .models_hf import HF_MODELS
from .models_untraceable import REAL_MODELS, build_real
from .oracle import assert_same, assert_unchanged, module_outputs, snapshot
from .test_defects import SharedChild

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
        # (x,): no targets, so train mode cannot export; ((x, targets),) would pass one tuple as x,
        # which no mode runs on (feature_info then raises, #12).
        ex = create_feature_extractor(model, ["lin"], example_inputs=(x,))
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
    if with_inputs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            infos = describe(model, x, nodes=["pre", "level.fc1"])
        assert infos.strategy == "export"
        assert [(i.name, i.shapes) for i in infos] == [("pre", ((2, 4),)), ("level.fc1", ((2, 4),))]
    oracle = module_outputs(model, x)
    out = ex(x)
    for n in nodes:
        assert_same(oracle[n], out[n], n)


# -- line 5: the sweep: every module path the forward calls, under auto, against the oracle ----

try:  # the timm sweep's architectures (tests/test_timm.py), where timm is installed
    from .test_timm import SWEEP as TIMM_SWEEP
except BaseException:  # pytest's Skipped when timm is missing
    TIMM_SWEEP = []
SAMPLE = 60  # large models: an even sample of this many paths


def _plain(value):
    leaves = torch.utils._pytree.tree_leaves(value)
    return all(isinstance(v, (torch.Tensor, int, float, bool, str, type(None))) for v in leaves)


def called_paths(model, args, kwargs, limit=SAMPLE):
    """The module paths the forward calls (first calls, plain outputs), evenly sampled to ``limit``."""
    oracle = module_outputs(model, *args, **kwargs)
    modules = dict(model.named_modules())
    paths = [n for n, v in oracle.items() if n in modules and _plain(v)]
    if len(paths) > limit:
        step = len(paths) / limit
        paths = [paths[int(i * step)] for i in range(limit)]
    return paths, oracle


def sweep_model(model, inputs, limit=SAMPLE, *, name=None):
    """``(strategy, paths checked)``: every called path (or a sample) equals the oracle under auto."""
    model.eval()
    args, kwargs = (inputs, {}) if isinstance(inputs, tuple) else ((), inputs)
    paths, oracle = called_paths(model, args, kwargs, limit)
    before = snapshot(model)
    with torch.no_grad():
        model(*args, **kwargs)
    # A model whose own forward rebinds its attributes (fasterrcnn's AnchorGenerator makes new
    # cell_anchors each call) cannot be compared object by object: then its state dict must be.
    try:
        assert_unchanged(model, before)
        rebinds = False
    except AssertionError:
        rebinds = True
    state = {k: v.clone() for k, v in model.state_dict().items()} if rebinds else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = create_feature_extractor(model, paths, example_inputs=inputs, suppress_diff_warning=True)
    ex.eval()
    with torch.no_grad():
        out = ex(*args, **kwargs)
    for n in paths:
        assert_same(oracle[n], out[n], n)
    if rebinds:
        after = model.state_dict()
        assert state.keys() == after.keys() and all(torch.equal(state[k], after[k]) for k in state)
    else:
        assert_unchanged(model, before)
    report = os.environ.get("FXTRACT_EVERY_MODULE_REPORT")
    if report and name:  # one JSON line per model swept, for the README's counts
        with open(report, "a") as f:
            f.write(json.dumps({"model": name, "strategy": ex.strategy, "paths": len(paths)}) + "\n")
    return ex.strategy, len(paths)


def _corpus():
    from . import models as M
    from . import models_untraceable as U

    return {
        "sum_branch": (U.SumBranch, (torch.ones(2, 8),)),
        "tiny_dino": (U.TinyDino, (torch.randn(2, 3, 48, 32),)),
        "deep_int": (M.DeepInt, (torch.randn(3, 4),)),
        "int_level": (WithIntLevel, (torch.randn(2, 4),)),
        "train_needs_targets": (lambda: TrainNeedsTargets(True), (torch.randn(2, 4),)),
        "shared_child": (SharedChild, (torch.randn(2, 4),)),
    }


CORPUS = ["sum_branch", "tiny_dino", "deep_int", "int_level", "train_needs_targets", "shared_child"]


@pytest.mark.parametrize("name", CORPUS)
def test_sweep_untraceable_corpus(name):
    build, inputs = _corpus()[name]
    strategy, checked = sweep_model(build(), inputs, name=name)
    assert checked > 0 and strategy in ("fx", "export", "hooks")


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_MODELS)
def test_sweep_untraceable_corpus_real_models(name):
    model, inputs = build_real(name)
    assert sweep_model(model, inputs, name=name)[1] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", HF_MODELS)
def test_sweep_hf_zoo(name):
    pytest.importorskip("transformers")
    from .models_hf import build_hf

    model, inputs = build_hf(name)
    assert sweep_model(model, inputs, name=name)[1] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM_SWEEP)
def test_sweep_timm(name):
    timm = pytest.importorskip("timm")
    try:
        model = timm.create_model(name, pretrained=False)
    except Exception:
        pytest.skip(f"{name} is not in this timm")
    size = model.pretrained_cfg.get("input_size", (3, 224, 224))
    assert sweep_model(model, (torch.randn(1, *size),), name=name)[1] > 0
