"""The inputs the command line describes a model with: ``--input-size``, ``--input``, ``--inputs``.

Also ``--model-arg KEY=VALUE``, the builder's arguments. Importing this module does
not import torch; the functions that build tensors import it.

The command line never allocates an input it only describes with: the tensors it
builds are on the ``meta`` device (a shape and a dtype, no data), so
``--input-size 3,100000,100000`` costs nothing. Only ``--inputs FILE`` (ready tensors
the user saved) holds data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .._errors import FxtractValueError, did_you_mean

__all__ = [
    "InputSpec",
    "InputSpecError",
    "ModelSpecError",
    "load_inputs",
    "meta_inputs",
    "parse_input_spec",
    "parse_model_arg",
    "parse_shape",
    "real_zeros",
    "summarize_inputs",
]

# A size beyond int32 per dimension, or beyond int64 in all, is a typo, not a tensor.
MAX_DIM = 2**31 - 1
MAX_NUMEL = 2**62
DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
_DTYPE_ALIASES = {"float": "float32", "half": "float16", "double": "float64", "long": "int64", "int": "int32"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INPUT_HELP = "NAME=SHAPE:DTYPE like input_ids=1,16:int64, or SHAPE:DTYPE for a positional input"


class ModelSpecError(FxtractValueError):
    """A MODEL spec, ``--weights`` or an input option the command line cannot use."""


class InputSpecError(ModelSpecError):
    """An ``--input-size``, ``--input``, ``--inputs`` or ``--model-arg`` value the CLI cannot use."""


@dataclass(frozen=True)
class InputSpec:
    """One input tensor to describe with: its forward argument (``None``: positional), shape, dtype.

    Example:
        >>> InputSpec("input_ids", (1, 16), "int64").label()
        'input_ids [1, 16] int64'
    """

    name: Optional[str]
    shape: tuple[int, ...]
    dtype: str = "float32"

    def label(self) -> str:
        shape = "[" + ", ".join(map(str, self.shape)) + "]"
        return f"{self.name + ' ' if self.name else ''}{shape} {self.dtype}"


def parse_shape(text: str, what: str = "input size") -> tuple[int, ...]:
    """``"3,224,224"`` -> ``(3, 224, 224)``: positive integers separated by ``,`` or ``x``.

    Raises:
        InputSpecError: empty, an empty field (``3,,64``), not an integer, zero, or a size
            too large to be a tensor (over 2**31 - 1 per dimension, 2**62 in all).

    Example:
        >>> parse_shape("3,224,224"), parse_shape("3x32x32")
        ((3, 224, 224), (3, 32, 32))
    """
    like = "like 3,224,224"
    text = text.strip().lower()
    if not text:
        raise InputSpecError(f"{what} is empty: give positive integers separated by commas, {like}.")
    parts = re.split(r"\s*[,x]\s*|\s+", text)
    sizes = []
    for k, part in enumerate(parts, 1):
        if not part:
            raise InputSpecError(f"{what} {text!r} has an empty field (number {k}): write it {like}.")
        if not part.isdigit():
            raise InputSpecError(
                f"{what} {text!r}: {part!r} is not a positive integer; sizes are integers separated by "
                f"commas, {like}."
            )
        size = int(part)
        if size == 0:
            raise InputSpecError(f"{what} {text!r} has a size 0: every size must be at least 1 ({like}).")
        if size > MAX_DIM:
            raise InputSpecError(f"{what} {text!r}: {part} is too large (at most {MAX_DIM} per dimension).")
        sizes.append(size)
    numel = 1
    for size in sizes:
        numel *= size
    if numel > MAX_NUMEL:
        raise InputSpecError(f"{what} {text!r} has {numel:.3g} elements; a tensor holds at most 2**62.")
    return tuple(sizes)


def parse_dtype(text: str) -> str:
    """A dtype name (``int64``, ``long``, ``torch.float16``) in its canonical form.

    Example:
        >>> parse_dtype("long"), parse_dtype("torch.bfloat16")
        ('int64', 'bfloat16')
    """
    name = text.strip().lower().removeprefix("torch.")
    name = _DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise InputSpecError(
            f"unknown dtype {text!r}.{did_you_mean(name, DTYPES)} The dtypes are {', '.join(DTYPES)}."
        )
    return name


def parse_input_spec(text: str) -> InputSpec:
    """``"input_ids=1,16:int64"`` -> ``InputSpec("input_ids", (1, 16), "int64")``.

    ``NAME=`` names the forward argument (a keyword input); without it the input is
    positional. The shape is the whole tensor's, batch included; the dtype defaults to
    ``float32``.

    Example:
        >>> parse_input_spec("input_ids=1,16:int64")
        InputSpec(name='input_ids', shape=(1, 16), dtype='int64')
        >>> parse_input_spec("2,3,32,32")
        InputSpec(name=None, shape=(2, 3, 32, 32), dtype='float32')
    """
    name: Optional[str] = None
    rest = text.strip()
    if "=" in rest:
        name, _, rest = rest.partition("=")
        name = name.strip()
        if not _IDENTIFIER.match(name):
            raise InputSpecError(f"--input {text!r}: {name!r} is not an argument name; write {_INPUT_HELP}.")
    shape_text, _, dtype_text = rest.partition(":")
    if not shape_text.strip():
        raise InputSpecError(f"--input {text!r} has no shape; write {_INPUT_HELP}.")
    shape = parse_shape(shape_text, f"--input {text!r}: shape")
    dtype = parse_dtype(dtype_text) if dtype_text.strip() else "float32"
    return InputSpec(name, shape, dtype)


def parse_model_arg(text: str) -> tuple[str, Any]:
    """``"image_size=64"`` -> ``("image_size", 64)``; values become int, float, bool, None or str.

    Example:
        >>> parse_model_arg("image_size=64"), parse_model_arg("pretrained=false")
        (('image_size', 64), ('pretrained', False))
        >>> parse_model_arg("act=gelu"), parse_model_arg("drop=0.1"), parse_model_arg("head=None")
        (('act', 'gelu'), ('drop', 0.1), ('head', None))
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _IDENTIFIER.match(key):
        raise InputSpecError(f"--model-arg {text!r} must be KEY=VALUE, like image_size=64.")
    return key, _parse_value(value.strip())


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def meta_inputs(specs: list[InputSpec]) -> Any:
    """``example_inputs`` of ``meta`` tensors (no data) for ``specs``: a tuple, a dict, or both.

    Example:
        >>> args, kwargs = meta_inputs([InputSpec(None, (1, 3)), InputSpec("mask", (1, 3), "bool")])
        >>> args[0].device.type, args[0].shape, kwargs["mask"].dtype
        ('meta', torch.Size([1, 3]), torch.bool)
    """
    import torch

    args = []
    kwargs: dict[str, Any] = {}
    for spec in specs:
        tensor = torch.empty(spec.shape, dtype=getattr(torch, spec.dtype), device="meta")
        if spec.name is None:
            if kwargs:
                raise InputSpecError("positional --input values go before the named ones (NAME=...).")
            args.append(tensor)
        elif spec.name in kwargs:
            raise InputSpecError(f"--input {spec.name}=... is given twice.")
        else:
            kwargs[spec.name] = tensor
    if not kwargs:
        return tuple(args)
    return (tuple(args), kwargs) if args else kwargs


def real_zeros(example: Any, *, max_bytes: int) -> Any:
    """``example`` with each meta tensor replaced by zeros on the CPU; ``None`` if they exceed ``max_bytes``.

    Example:
        >>> import torch
        >>> real_zeros({"x": torch.empty(2, 3, device="meta")}, max_bytes=1024)["x"].sum().item()
        0.0
    """
    import torch

    meta = [t for t in _leaves(example) if isinstance(t, torch.Tensor) and t.is_meta]
    if sum(t.numel() * t.element_size() for t in meta) > max_bytes:
        return None

    def convert(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_meta:
            return torch.zeros(value.shape, dtype=value.dtype)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        return value

    return convert(example)


def load_inputs(path_text: str) -> Any:
    """``example_inputs`` from a file of ready tensors.

    A ``.safetensors`` file gives keyword inputs (``{name: tensor}``); any other file
    is read with ``torch.load(weights_only=True)`` and passed as ``example_inputs``
    are: a tensor, a tuple of positional inputs, a dict of keyword inputs, or
    ``(args_tuple, kwargs_dict)``.
    """
    import os

    import torch

    path = Path(path_text).expanduser()
    if not path.is_file():
        raise InputSpecError(f"--inputs: no such file: {path_text!r}.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(os.fspath(path))
        value = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise InputSpecError(
            f"--inputs: could not read {path_text!r} ({type(e).__name__}: {text[:200]}). Save it with "
            "torch.save(inputs, path) (a tensor, tuple or dict of tensors) or safetensors.torch.save_file."
        ) from None
    if not any(isinstance(t, torch.Tensor) for t in _leaves(value)):
        raise InputSpecError(
            f"--inputs: {path_text!r} holds a {type(value).__name__} without tensors; save a tensor, a tuple "
            "of tensors (positional inputs) or a dict {argument name: tensor} (keyword inputs)."
        )
    if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
        raise InputSpecError(
            f"--inputs: the keys of the dict in {path_text!r} must be forward argument names."
        )
    return value


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _leaves(v)]
    return [value]


def summarize_inputs(example: Any) -> str:
    """``"x [1, 3, 224, 224] float32"``-style description of ``example_inputs`` for the stderr line."""
    import torch

    def one(name: Optional[str], value: Any) -> str:
        if isinstance(value, torch.Tensor):
            return InputSpec(name, tuple(value.shape), str(value.dtype).removeprefix("torch.")).label()
        return f"{name + ' ' if name else ''}{type(value).__name__}"

    if isinstance(example, dict):
        return ", ".join(one(k, v) for k, v in example.items())
    if isinstance(example, tuple) and len(example) == 2 and isinstance(example[1], dict):
        return ", ".join([one(None, v) for v in example[0]] + [one(k, v) for k, v in example[1].items()])
    if isinstance(example, tuple):
        return ", ".join(one(None, v) for v in example)
    return one(None, example)
