"""Argument checks shared by the public calls, so that a mistake is named where it is made.

Each check raises an :class:`~fxtract.FxtractError` that also subclasses the builtin
callers catch, says what was wrong, what exists, and what to do. Importing this
module does not import torch: the checks look at names, types and signatures only.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Mapping
from typing import Any, Optional

from ._errors import (
    FxtractError,
    FxtractTypeError,
    FxtractValueError,
    NodeNotFoundError,
    NotScriptableError,
    did_you_mean,
)

__all__ = [
    "check_call_inputs",
    "check_extractor_call",
    "check_not_root",
    "check_forward_inputs",
    "check_input_dtype",
    "check_trace_root",
    "check_tracer_kwargs",
    "not_scriptable",
    "raise_bad_inputs",
    "return_node_pairs",
]

_LIST_NAMES = "List the names with fxtract.get_graph_node_names(model) or `fxtract nodes MODEL`."


# ---------------------------------------------------------------------------------------------
# return_nodes


def _is_key(key: Any) -> bool:
    """An output key the graph can return as given: a str, an int, or a tuple of them."""
    if isinstance(key, bool):
        return False
    if isinstance(key, (str, int)):
        return True
    return isinstance(key, tuple) and bool(key) and all(_is_key(k) for k in key)


def return_node_pairs(nodes: Any, arg: str) -> list[tuple[str, Any]]:
    """``[(node name, output key)]`` from a name, a list of names or a ``{name: key}`` dict.

    Names must be strings; keys are kept as given (``{"conv": 5}`` returns ``out[5]``)
    when they are strings, ints or tuples of them.

    Raises:
        FxtractTypeError: not a name, list or dict; a name that is not a string; a key
            that cannot be kept.

    Example:
        >>> return_node_pairs(["layer1", "fc"], "return_nodes")
        [('layer1', 'layer1'), ('fc', 'fc')]
        >>> return_node_pairs({"layer1": 1, "fc": "logits"}, "return_nodes")
        [('layer1', 1), ('fc', 'logits')]
    """
    if isinstance(nodes, str):
        nodes = [nodes]
    if isinstance(nodes, Mapping):
        pairs = list(nodes.items())
    elif isinstance(nodes, (bytes, bytearray)) or not _iterable(nodes):
        raise FxtractTypeError(
            f"{arg} must be a list of node names or a dict {{node name: output key}}, got "
            f"{type(nodes).__name__}. {_LIST_NAMES}"
        )
    else:
        pairs = [(n, n) for n in nodes]
    for name, key in pairs:
        if not isinstance(name, str):
            raise FxtractTypeError(
                f"{arg} holds {name!r} ({type(name).__name__}); node names are strings like 'layer1' or "
                f"'layer1.0.relu'. {_LIST_NAMES}"
            )
        if not _is_key(key):
            raise FxtractTypeError(
                f"{arg} maps {name!r} to the output key {key!r} ({type(key).__name__}); an output key "
                "is a string, an int or a tuple of them, kept as given. Use a string: "
                f"{{{name!r}: {str(key)!r}}}."
            )
    return pairs


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Tracing


def check_trace_root(root: Any, concrete_args: Optional[Mapping[str, Any]] = None) -> None:
    """``Tracer.trace`` takes a module or a function; ``concrete_args`` names its parameters.

    Example:
        >>> check_trace_root("resnet18")
        Traceback (most recent call last):
        ...
        fxtract._errors.FxtractTypeError: trace() takes an nn.Module or a function, got str 'resnet18'; build the model first (torchvision.models.get_model('resnet18', weights=None)).
    """
    forward = getattr(root, "forward", None) if not inspect.isfunction(root) else root
    if not callable(forward) or isinstance(root, type):
        if isinstance(root, str):
            build = f"build the model first (torchvision.models.get_model({root!r}, weights=None))"
        elif isinstance(root, type):
            build = "pass an instance (Model()), not the class"
        else:
            build = "pass the model"
        shown = f" {root!r}" if isinstance(root, (str, int, float)) else ""
        raise FxtractTypeError(
            f"trace() takes an nn.Module or a function, got {type(root).__name__}{shown}; {build}."
        )
    if concrete_args is None:
        return
    if not isinstance(concrete_args, Mapping):
        raise FxtractTypeError(
            f"concrete_args must be a dict {{forward argument name: value}}, got {type(concrete_args).__name__}."
        )
    params = _parameters(forward)
    if params is None or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in concrete_args if k not in params]
    if unknown:
        names = [n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL]
        raise FxtractValueError(
            f"concrete_args names {unknown}, which forward() does not take; its arguments are {names}."
            f"{did_you_mean(str(unknown[0]), names)}"
        )


def check_tracer_kwargs(cls: type, leaf_modules: Any, kwargs: Mapping[str, Any]) -> None:
    """The options of a tracer class: known names, iterables where the tracer iterates.

    Example:
        >>> class Tracer:
        ...     def __init__(self, autowrap_modules=(), param_shapes_constant=False): ...
        >>> check_tracer_kwargs(Tracer, None, {"autowrap_module": ()})
        Traceback (most recent call last):
        ...
        fxtract._errors.FxtractTypeError: tracer_kwargs has 'autowrap_module', which Tracer does not take. Did you mean 'autowrap_modules'? Its options are leaf_modules, autowrap_modules, param_shapes_constant.
    """
    for name, value in (("leaf_modules", leaf_modules), *kwargs.items()):
        iterated = name in ("leaf_modules", "autowrap_modules", "autowrap_functions") and value is not None
        if iterated and (isinstance(value, (str, bytes)) or not _iterable(value)):
            raise FxtractTypeError(
                f"tracer_kwargs[{name!r}] must be a list, got {type(value).__name__} {value!r:.60} "
                f"(e.g. {name}=[...])."
            )
        if iterated and name != "leaf_modules":
            _check_autowraps(name, value)
    known: dict[str, None] = {"leaf_modules": None}
    for klass in cls.__mro__:
        params = _parameters(klass.__init__) if "__init__" in vars(klass) else None
        for p in (params or {}).values():
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                known.setdefault(p.name)
    unknown = [k for k in kwargs if k not in known]
    if unknown:
        raise FxtractTypeError(
            f"tracer_kwargs has {unknown[0]!r}, which {cls.__name__} does not take."
            f"{did_you_mean(unknown[0], known)} Its options are {', '.join(known)}."
        )


def _check_autowraps(name: str, items: Any) -> None:
    want = "Python modules (import math; [math])" if name == "autowrap_modules" else "functions"
    for item in items:
        ok = isinstance(item, types.ModuleType) if name == "autowrap_modules" else callable(item)
        if not ok:
            raise FxtractTypeError(
                f"tracer_kwargs[{name!r}] entries must be {want}; got {item!r:.60} ({type(item).__name__})."
            )


def _parameters(fn: Any) -> Optional[Mapping[str, inspect.Parameter]]:
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or an object without a signature
        return None


# ---------------------------------------------------------------------------------------------
# example_inputs


def check_forward_inputs(model: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``example_inputs`` (as ``args``, ``kwargs``) bind to ``model.forward``'s parameters.

    Raises:
        FxtractValueError: more positional inputs than forward takes, a keyword it does
            not take, or a required argument without a value.

    Example:
        >>> class M:
        ...     def forward(self, x, mask=None): ...
        >>> check_forward_inputs(M(), (1, 2, 3), {})
        Traceback (most recent call last):
        ...
        fxtract._errors.FxtractValueError: example_inputs has 3 positional inputs, but M.forward(x, mask) takes at most 2; pass the extra ones by name in a dict, or drop them.
    """
    forward = getattr(model, "forward", None)
    params = _parameters(forward) if forward is not None else None
    if params is None:
        return
    kinds = [p.kind for p in params.values()]
    where = f"{type(model).__name__}.forward({', '.join(params)})"
    if inspect.Parameter.VAR_POSITIONAL not in kinds:
        positional = [n for n, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(args) > len(positional):
            raise FxtractValueError(
                f"example_inputs has {len(args)} positional inputs, but {where} takes at most "
                f"{len(positional)}; pass the extra ones by name in a dict, or drop them."
            )
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        unknown = [
            k for k in kwargs if k not in params or params[k].kind is inspect.Parameter.POSITIONAL_ONLY
        ]
        if unknown:
            names = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            raise FxtractValueError(
                f"example_inputs has keyword arguments {unknown} that forward() does not take; its arguments "
                f"are {names}.{did_you_mean(str(unknown[0]), names)}"
            )
    try:
        inspect.signature(forward).bind(*args, **kwargs)
    except TypeError:
        bound = set(list(params)[: len(args)]) | set(kwargs)
        missing = [
            n
            for n, p in params.items()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n not in bound
        ]
        if missing:
            raise FxtractValueError(
                f"example_inputs gives no value for forward() argument {missing[0]!r} ({where})."
            ) from None


def check_call_inputs(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: Mapping[str, Any], strategy: str
) -> None:
    """The inputs of an extractor call fit the inputs its graph was made for.

    Example:
        >>> import inspect
        >>> check_call_inputs(inspect.Signature.from_callable(lambda x: x), (), {"y": 1}, "export")
        Traceback (most recent call last):
        ...
        fxtract._errors.FxtractTypeError: this extractor (strategy='export') takes forward(x), the inputs it was exported with; got the keyword argument 'y'. Create the extractor with example_inputs that name every input you will pass.
    """
    try:
        signature.bind(*args, **kwargs)
    except TypeError as e:
        names = list(signature.parameters)
        made = "it was exported with" if strategy == "export" else "of the model's forward"
        unknown = [k for k in kwargs if k not in signature.parameters]
        problem = (
            f"got the keyword argument {unknown[0]!r}{did_you_mean(unknown[0], names)}" if unknown else str(e)
        )
        raise FxtractTypeError(
            f"this extractor (strategy={strategy!r}) takes forward({', '.join(names)}), the inputs {made}; "
            f"{problem}."
            + (
                " Create the extractor with example_inputs that name every input you will pass."
                if strategy == "export"
                else ""
            )
        ) from None


def check_extractor_call(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """A forward pre-hook (``with_kwargs=True``): the call's inputs bind to the extractor's forward
    (the hooks extractor's: to its model's forward)."""
    forward = module.model.forward if getattr(module, "strategy", "") == "hooks" else module.forward
    try:
        signature = inspect.signature(forward)
    except (TypeError, ValueError):
        return
    check_call_inputs(signature, args, kwargs, getattr(module, "strategy", "export"))


def check_input_dtype(name: str, got: str, want: Optional[str], mode: str) -> None:
    """A tensor input has the dtype the graph was exported for (export specialises dtypes).

    Example:
        >>> check_input_dtype("x", "torch.float64", "torch.float32", "eval")
        Traceback (most recent call last):
        ...
        fxtract._errors.FxtractTypeError: the eval-mode graph was exported (strategy='export') for x of dtype float32, got float64. Export specialises the graph to the dtypes of example_inputs: convert the input (x.to(torch.float32)) or create the extractor with example_inputs of that dtype.
    """
    if want is None or got == want:
        return
    short = want.replace("torch.", "")
    raise FxtractTypeError(
        f"the {mode}-mode graph was exported (strategy='export') for {name} of dtype {short}, got "
        f"{got.replace('torch.', '')}. Export specialises the graph to the dtypes of example_inputs: convert "
        f"the input ({name}.to(torch.{short})) or create the extractor with example_inputs of that dtype."
    )


def check_not_root(name: str, model_name: str) -> None:
    """``""`` names the model itself, which strategy hooks cannot return (it returns calls inside it)."""
    if name == "":
        raise NodeNotFoundError(
            f"'' names {model_name} itself; strategy hooks returns the calls of modules inside it. The model's "
            "output is what model(...) returns; ask for the last module call instead (the last name that "
            "fxtract.get_graph_node_names(model, strategy='hooks', example_inputs=...) lists)."
        )


def raise_bad_inputs(error: BaseException) -> None:
    """Re-raise ``error`` when it says the model's forward rejects ``example_inputs`` (not best-effort)."""
    if isinstance(error, FxtractError) and getattr(error, "bad_inputs", False):
        raise error


# ---------------------------------------------------------------------------------------------
# TorchScript


def not_scriptable(strategy: str) -> None:
    """Raise for ``torch.jit.script`` of an extractor built by ``strategy`` (only ``"fx"`` scripts).

    Example:
        >>> not_scriptable("hooks")
        Traceback (most recent call last):
        ...
        fxtract._errors.NotScriptableError: torch.jit.script cannot compile an extractor of strategy='hooks': it runs the model's Python forward with hooks. Script one of strategy='fx' (the model must be FX-traceable), or compile with torch.compile / save with torch.export.
    """
    how = {
        "hooks": "it runs the model's Python forward with hooks",
        "export": "its graph holds ATen ops and input pytrees that TorchScript does not compile",
    }.get(strategy, "it is not an FX graph")
    raise NotScriptableError(
        f"torch.jit.script cannot compile an extractor of strategy={strategy!r}: {how}. Script one of "
        "strategy='fx' (the model must be FX-traceable), or compile with torch.compile / save with "
        "torch.export."
    )
