"""Toy models shared by the tests (one small class per behaviour under test)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SubModule(nn.Module):
    """torchvision's naming fixture: repeated ops and a module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x):
        x = x + 1
        x = x + 1
        x = self.relu(x)
        x = self.relu(x)
        return x


class RepeatModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.submodule = SubModule()
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.submodule(x)
        x = x + 1
        x = x + 1
        x = self.relu(x)
        x = self.relu(x)
        return x


REPEAT_MODEL_NODES = [
    "x",
    "submodule.add",
    "submodule.add_1",
    "submodule.relu",
    "submodule.relu_1",
    "add",
    "add_1",
    "relu",
    "relu_1",
]


class SuffixedNames(nn.Module):
    """Module names ending in _<int>, as in torchvision's ViT (``ln_1``, ``ln_2``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(4)
        self.ln_2 = nn.LayerNorm(4)

    def forward(self, x):
        return self.ln_2(self.ln_1(x))


class Collide(nn.Module):
    """A module ``relu_1`` beside a module ``relu`` that is called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.relu_1 = nn.Tanh()

    def forward(self, x):
        x = self.relu(x)
        x = self.relu(x)
        return self.relu_1(x)


class RegexNames(nn.Module):
    """Module names with characters special to regular expressions."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict({"conv(a)": nn.Linear(4, 4), "conv+b": nn.Linear(4, 4)})

    def forward(self, x):
        x = self.blocks["conv(a)"](x)
        x = self.blocks["conv(a)"](x)
        return self.blocks["conv+b"](x)


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return F.relu(self.fc(x)) * 2


class SharedCall(nn.Module):
    """A submodule called from its parent and from the top-level forward."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Inner()

    def forward(self, x):
        x = self.block(x)
        x = self.block.fc(x)
        return self.block(x)


class TupleBlock(nn.Module):
    """Returns ``(a(x), b(x))``: torchvision's prefix resolves to ``b(x)`` alone."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x):
        return self.a(x), self.b(x)


class EarlierReturn(nn.Module):
    """Returns a value computed before its last op."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        _ = torch.sigmoid(y)
        return y


class Containers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair = TupleBlock()
        self.early = EarlierReturn()

    def forward(self, x):
        a, b = self.pair(x)
        return self.early(a + b)


class DeepInt(nn.Module):
    """FX cannot trace ``int(x.shape[0])`` inside ``inner``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.inner = nn.Sequential(IntShape(), nn.ReLU())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.inner(self.stem(x)))


class IntShape(nn.Module):
    def forward(self, x):
        n = int(x.shape[0])
        return x * n


class TrainEval(nn.Module):
    """torchvision's train/eval fixture: control flow on ``self.training``."""

    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=1.0)

    def forward(self, x):
        x = x.mean()
        x = self.dropout(x)
        if self.training:
            x += 100
        else:
            x *= 0
        x -= 0
        return x


class NoneTrain(nn.Module):
    """A model whose ``train()`` returns None (torchvision crashes on it)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)

    def train(self, mode=True):
        super().train(mode)

    def forward(self, x):
        return self.bn(self.fc(x))


class GradRegions(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        y = self.a(x)
        with torch.no_grad():
            z = self.b(y)
        with torch.enable_grad():
            w = y * self.scale
        return y + z + w


class Counter(nn.Module):
    """Updates a buffer in place on every call."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.fc = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 4)

    def forward(self, x):
        self.count += 1
        return self.fc2(self.fc(x))


class HookedBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Inner()
        self.seen = []
        self.block.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.seen.append(output.detach().numpy().sum())

    def forward(self, x):
        return self.block(x)


class Asserts(nn.Module):
    """Checks before, inside and after the requested outputs (``one``)."""

    def __init__(self) -> None:
        super().__init__()
        self.one = CheckedLinear()
        self.two = CheckedLinear()

    def forward(self, x):
        torch._assert(x.dim() == 2, "input must be 2-D")
        x = self.one(x)
        x = self.two(x)
        torch._assert(x.sum() > -1e9, "late check on pruned compute")
        return x


class CheckedLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        torch._assert(x.shape[-1] == 4, "expected 4 features")
        return self.fc(x)


class AxB(nn.Module):
    """torchvision's regex lookup accepts 'a.b' for a module named 'axb'."""

    def __init__(self) -> None:
        super().__init__()
        self.axb = nn.Linear(4, 4)

    def forward(self, x):
        return self.axb(x)


class InplaceInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        z = y.view(-1)
        z.mul_(2)
        y.add_(1)
        return torch.relu_(y)


class SharedPaths(nn.Module):
    """One block under two paths (timm coat's shared ``cpe``), tied weights, and a BatchNorm buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.cpe = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        self.stage = nn.Sequential(nn.Linear(4, 4))
        self.stage.cpe = self.cpe  # the same module object, a second path
        self.head = nn.Linear(4, 4)
        self.head.weight = self.stage[0].weight  # tied

    def forward(self, x):
        x = self.stage.cpe(self.stage[0](x))
        return self.head(self.cpe(x))


def add_into(x, y):
    """Adds ``y`` into ``x`` in place and returns nothing (as torchvision MViT's ``_add_shortcut``)."""
    x += y


torch.fx.wrap("add_into")  # FX records one opaque call, as for torchvision's wrapped helpers


class OpaqueInplace(nn.Module):
    """A wrapped function called only for its in-place effect: its result is unused."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.out = nn.Linear(4, 4)

    def forward(self, x):
        h = self.lin(x)
        add_into(h, x)
        return self.out(h)


class AddsIntoItsResult(nn.Module):
    """Returns a tensor it changed in place after making it (torchvision MViT's PositionalEncoding)."""

    def forward(self, x):
        y = torch.cat((x, x), dim=1)
        y.add_(1.0)
        return y


class ChangedInsideThenAfter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos = AddsIntoItsResult()

    def forward(self, x):
        y = self.pos(x)
        y.mul_(0)  # after the call: must not reach what `pos` returned
        return y


def clip_sizes(sizes, limit):
    """Changes the list it is given (as torchvision's ``_get_window_and_shift_size``)."""
    for i in range(len(sizes)):
        sizes[i] = min(sizes[i], limit)
    return sizes


torch.fx.wrap("clip_sizes")


class MutatesListArg(nn.Module):
    def forward(self, x):
        h, w = clip_sizes([4, 8], x.shape[1] * 2)  # a traced value: FX records the call
        return x.flatten(1)[:, : h * w]


class ReturnsBuffer(nn.Module):
    """A leaf (by class) returning its own buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("offset", torch.ones(3, 4))  # the shape of a batch of 3

    def forward(self, x):
        return self.offset


class Residuals(nn.Module):
    """Adds whose operands are temporaries, and adds the inference module must leave out of place:
    an operand used again, a module's own buffer, a view, a broadcast, a dtype promotion, an add
    of a scalar, and a tensor a forward hook keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.stored = ReturnsBuffer()
        self.kept: list[torch.Tensor] = []
        self.c = nn.Linear(4, 4)
        self.c.register_forward_hook(lambda m, i, out: self.kept.append(out))

    def forward(self, x):
        t = self.a(x) + x  # a temporary: written in place
        u = self.b(t) + t  # t is used again below
        v = self.stored(u) + u  # the leaf's buffer must stay ones
        w = self.a(v)[:, :2] + 1.0  # a view
        small = self.b(v).sum(0, keepdim=True)
        z = small + v  # the sum broadcasts small: not into small, into v (used again: not either)
        i = torch.arange(x.shape[1]) + 0.5  # int + float: the result is not the operand's dtype
        kept = self.c(u) + 2  # the hook keeps this tensor
        return t, u, v, w, z, i + z, kept
