"""Loading a model from a command-line MODEL spec (``torchvision:NAME``, ``timm:NAME``, ``file.py:factory``).

Importing this module does not import torch; each function imports what it needs.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .._errors import FxtractError, FxtractValueError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "LoadedModel",
    "MissingPackageError",
    "ModelSpecError",
    "example_input",
    "load_model",
    "parse_input_size",
]

DEFAULT_INPUT_SIZE = (3, 224, 224)
_VIDEO_FRAMES = 16  # frames for a video model whose weights name no minimum

SPEC_HELP = "torchvision:NAME, timm:NAME or path/to/file.py:factory"


class ModelSpecError(FxtractValueError):
    """A MODEL spec, ``--weights`` or ``--input-size`` the command line cannot use."""


class MissingPackageError(FxtractError, ImportError):
    """An optional package that the MODEL spec needs is not installed."""


@dataclass
class LoadedModel:
    """A model built from a spec, with what the command line needs to run it.

    Attributes:
        model: the model, in eval mode.
        spec: the spec it came from.
        input_size: the default size of one input sample, without the batch dim
            (``(3, 224, 224)``), from the model's config when known.
        tracer_kwargs: tracer options the model's library recommends (timm's leaf
            modules and functions), or ``None``.
    """

    model: nn.Module
    spec: str
    input_size: tuple[int, ...] = DEFAULT_INPUT_SIZE
    tracer_kwargs: Optional[dict[str, Any]] = field(default=None)


def parse_input_size(text: str) -> tuple[int, ...]:
    """``"3,224,224"`` -> ``(3, 224, 224)``; commas, ``x`` or spaces separate the sizes.

    Raises:
        ModelSpecError: not a list of positive integers.

    Example:
        >>> parse_input_size("3,224,224"), parse_input_size("3x32x32")
        ((3, 224, 224), (3, 32, 32))
    """
    parts = [p for p in re.split(r"[,x\s]+", text.strip().lower()) if p]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ModelSpecError(
            f"input size must be positive integers separated by commas, like 3,224,224; got {text!r}."
        )
    return tuple(int(p) for p in parts)


def example_input(input_size: tuple[int, ...], batch: int = 1) -> torch.Tensor:
    """A zero tensor of shape ``(batch, *input_size)`` (what the command line describes with).

    Example:
        >>> example_input((3, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """
    import torch

    return torch.zeros(batch, *input_size)


def load_model(spec: str, *, weights: Optional[str] = None) -> LoadedModel:
    """Build the model a spec names, with random weights unless ``weights`` says otherwise.

    Args:
        spec: ``torchvision:NAME`` (``torchvision.models.get_model``), ``timm:NAME``
            (``timm.create_model``) or ``path/to/file.py:factory`` (a function or class in
            that file, called with no arguments, or a module instance).
        weights: ``None`` (random weights, nothing downloaded), ``"DEFAULT"`` (the
            library's pretrained weights, downloaded) or the path of a state dict
            (``torch.save`` file or ``.safetensors``).

    Raises:
        ModelSpecError: unknown model (with suggestions), a file without the factory
            (listing the callables it has), weights that do not fit.
        MissingPackageError: torchvision or timm is not installed.

    Example:
        >>> loaded = load_model("torchvision:resnet18")
        >>> type(loaded.model).__name__, loaded.input_size
        ('ResNet', (3, 224, 224))
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"MODEL must be {SPEC_HELP}; got {spec!r}.")
    spec = spec.strip()
    if spec.startswith("torchvision:"):
        loaded = _load_torchvision(spec[len("torchvision:") :], weights)
    elif spec.startswith("timm:"):
        loaded = _load_timm(spec[len("timm:") :], weights)
    elif ".py:" in spec or spec.endswith(".py"):
        loaded = _load_file(spec, weights)
    else:
        raise ModelSpecError(f"MODEL must be {SPEC_HELP}; got {spec!r}.{_guess_library(spec)}")
    loaded.spec = spec
    loaded.model.eval()
    return loaded


# ---------------------------------------------------------------------------------------------
# torchvision


def _import(package: str, extra: str) -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise MissingPackageError(
            f"{package} is not installed ({e}); install it with: pip install 'fxtract[{extra}]'"
        ) from None


def _load_torchvision(name: str, weights: Optional[str]) -> LoadedModel:
    _import("torchvision", "vision")
    from torchvision import models

    available = models.list_models()
    if name not in available:
        raise ModelSpecError(
            f"torchvision has no model {name!r}.{did_you_mean(name, available)} "
            "List them with: python -c 'import torchvision; print(torchvision.models.list_models())'"
        )
    use_default = weights is not None and weights.upper() == "DEFAULT"
    kwargs: dict[str, Any] = {"weights": "DEFAULT" if use_default else None}
    if not use_default and "weights_backbone" in inspect.signature(models.get_model_builder(name)).parameters:
        # Detection and segmentation builders load ImageNet backbone weights by default (a download).
        kwargs["weights_backbone"] = None
    try:
        model = models.get_model(name, **kwargs)
    except Exception as e:
        what = "download the weights of" if use_default else "build"
        raise ModelSpecError(f"could not {what} torchvision:{name}: {_first_line(e)}") from None
    if weights is not None and not use_default:
        _load_state_dict(model, weights)
    return LoadedModel(model, f"torchvision:{name}", _torchvision_input_size(name))


def _torchvision_input_size(name: str) -> tuple[int, ...]:
    """The input size the model's default weights were evaluated at, if it has weights."""
    from torchvision.models import get_model_weights

    try:
        default = get_model_weights(name).DEFAULT
        transforms = default.transforms()
    except Exception:
        return DEFAULT_INPUT_SIZE
    meta = default.meta
    min_h, min_w = meta.get("min_size", (1, 1))
    size = getattr(transforms, "crop_size", None) or getattr(transforms, "resize_size", None)
    if size:
        h, w = (size[0], size[0]) if len(size) == 1 else (size[0], size[1])
    else:
        h, w = DEFAULT_INPUT_SIZE[1:]
    h, w = max(h, min_h), max(w, min_w)
    if type(transforms).__name__ == "VideoClassification":
        frames = max(meta.get("min_temporal_size") or 1, _VIDEO_FRAMES)
        return (3, frames, h, w)
    return (3, h, w)


# ---------------------------------------------------------------------------------------------
# timm


def _load_timm(name: str, weights: Optional[str]) -> LoadedModel:
    timm = _import("timm", "timm")
    is_hub = name.startswith(("hf-hub:", "hf_hub:"))
    if not is_hub and not timm.is_model(name.split(".", 1)[0]):
        raise ModelSpecError(
            f"timm has no model {name!r}.{did_you_mean(name, timm.list_models())} "
            "List them with: python -c 'import timm; print(timm.list_models())'"
        )
    use_default = weights is not None and weights.upper() == "DEFAULT"
    try:
        model = timm.create_model(name, pretrained=use_default)
    except Exception as e:
        what = "download the weights of" if use_default else "build"
        raise ModelSpecError(f"could not {what} timm:{name}: {_first_line(e)}") from None
    if weights is not None and not use_default:
        _load_state_dict(model, weights)
    return LoadedModel(model, f"timm:{name}", _config_input_size(model), _timm_tracer_kwargs())


def _timm_tracer_kwargs() -> Optional[dict[str, Any]]:
    """timm's own FX leaves and autowrapped functions (what timm's feature extraction uses)."""
    try:
        from timm.layers import _fx
    except ImportError:  # pragma: no cover - old timm
        return None
    return {"leaf_modules": _fx.get_notrace_modules(), "autowrap_functions": _fx.get_notrace_functions()}


def _config_input_size(model: Any) -> tuple[int, ...]:
    """``input_size`` from a timm-style ``pretrained_cfg`` / ``default_cfg``, else the default."""
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        size = cfg.get("input_size") if isinstance(cfg, dict) else None
        if size and all(isinstance(s, int) and s > 0 for s in size):
            return tuple(size)
    return DEFAULT_INPUT_SIZE


# ---------------------------------------------------------------------------------------------
# path/to/file.py:factory


def _load_file(spec: str, weights: Optional[str]) -> LoadedModel:
    from torch import nn

    path_text, _, factory_name = spec.rpartition(":") if not spec.endswith(".py") else (spec, "", "")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ModelSpecError(f"no such file: {path_text!r} (MODEL must be {SPEC_HELP}).")
    module = _import_file(path)
    candidates = _factories(module)
    if not factory_name:
        raise ModelSpecError(
            f"name the factory in {path_text}: {path_text}:FACTORY; it defines {_listing(candidates)}."
        )
    factory = getattr(module, factory_name, None)
    if factory is None:
        raise ModelSpecError(
            f"{path_text} has no {factory_name!r}.{did_you_mean(factory_name, candidates)} "
            f"It defines {_listing(candidates)}."
        )
    if isinstance(factory, nn.Module):
        model = factory
    elif callable(factory):
        try:
            model = factory()
        except Exception as e:
            raise ModelSpecError(f"{path_text}:{factory_name}() failed: {_first_line(e)}") from None
    else:
        raise ModelSpecError(
            f"{path_text}:{factory_name} is a {type(factory).__name__}, not a function, class or module."
        )
    if not isinstance(model, nn.Module):
        raise ModelSpecError(
            f"{path_text}:{factory_name}() returned a {type(model).__name__}, not a torch.nn.Module."
        )
    if weights is not None:
        if weights.upper() == "DEFAULT":
            raise ModelSpecError(
                "--weights DEFAULT works for torchvision: and timm: models; for a file, pass a state dict path."
            )
        _load_state_dict(model, weights)
    return LoadedModel(model, spec, _config_input_size(model))


def _import_file(path: Path) -> Any:
    name = f"_fxtract_user_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelSpecError(f"cannot import {str(path)!r} as a Python file.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))  # the file may import its neighbours
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise ModelSpecError(f"importing {str(path)!r} failed: {_first_line(e)}") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _factories(module: Any) -> list[str]:
    """Functions and classes defined in ``module`` itself, and module instances in it."""
    from torch import nn

    out = []
    for attr, value in vars(module).items():
        if attr.startswith("_"):
            continue
        defined_here = getattr(value, "__module__", None) == module.__name__
        is_factory = (inspect.isfunction(value) or inspect.isclass(value)) and defined_here
        if is_factory or isinstance(value, nn.Module):
            out.append(attr)
    return out


def _listing(names: list[str]) -> str:
    return ", ".join(names) if names else "no public function or class"


# ---------------------------------------------------------------------------------------------
# Weights and messages


def _load_state_dict(model: nn.Module, weights: str) -> None:
    import torch

    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelSpecError(
            f"--weights must be DEFAULT or the path of a state dict; no such file: {weights!r}."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(os.fspath(path))
        else:
            state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelSpecError(f"could not read weights {weights!r}: {_first_line(e)}") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint layouts
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelSpecError(f"{weights!r} holds a {type(state).__name__}, not a state dict.")
    try:
        result = model.load_state_dict(state, strict=False)
    except Exception as e:
        raise ModelSpecError(f"weights {weights!r} do not fit the model: {_first_line(e)}") from None
    problems = []
    if result.missing_keys:
        problems.append(f"{len(result.missing_keys)} missing keys (e.g. {result.missing_keys[0]!r})")
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} unexpected keys (e.g. {result.unexpected_keys[0]!r})")
    if problems:
        raise ModelSpecError(f"weights {weights!r} do not fit the model: {', '.join(problems)}.")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _guess_library(name: str) -> str:
    """A hint for a bare model name: which library has it (without importing an absent one)."""
    hints = []
    for package, prefix in (("torchvision", "torchvision:"), ("timm", "timm:")):
        if importlib.util.find_spec(package) is None:
            continue
        try:
            if package == "torchvision":
                from torchvision.models import list_models

                known = name in list_models()
            else:
                import timm

                known = timm.is_model(name)
        except Exception:  # pragma: no cover - a broken install
            known = False
        if known:
            hints.append(prefix + name)
    return " Did you mean " + " or ".join(repr(h) for h in hints) + "?" if hints else ""


# ---------------------------------------------------------------------------------------------
# Preprocessing for `fxtract extract` (owner: the data helper)


def data_transform(
    loaded: LoadedModel,
    *,
    image_size: Optional[int] = None,
    resize: Optional[int] = None,
    normalize: bool = True,
    weights: Any = None,
) -> Any:
    """The image preprocessing a model spec calls for (PIL image -> float tensor).

    In order: the torchvision weights' own ``transforms()`` when the spec carries
    torchvision weights (``weights``, else ``loaded.weights`` when the loader records it:
    a ``WeightsEnum``, ``"DEFAULT"`` or a weights name); timm's ``resolve_data_config`` +
    ``create_transform`` for a model with a timm ``pretrained_cfg``; else
    ``fxtract._data.image_transform()`` at the model's input size (resize 256, crop 224,
    ImageNet mean/std for the default size). ``image_size`` (the crop), ``resize`` (the
    shorter side first; by default scaled with ``image_size`` as the model's ratio) and
    ``normalize=False`` override each of them.

    Example:
        >>> t = data_transform(load_model("torchvision:resnet18"), image_size=32)
        >>> t.image_size, t.resize
        (32, 37)
    """
    from .._data import image_transform

    for name, value in (("image_size", image_size), ("resize", resize)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ModelSpecError(f"--{name.replace('_', '-')} must be a positive integer; got {value!r}.")
    overridden = image_size is not None or resize is not None or not normalize
    preset = _weights_preset(loaded, weights)
    if preset is not None:
        crop, first = getattr(preset, "crop_size", None), getattr(preset, "resize_size", None)
        if not overridden:
            return preset
        if crop and first and hasattr(preset, "mean"):
            size = image_size or crop[0]
            return image_transform(
                image_size=size,
                resize=resize or (first[0] if image_size is None else round(size * first[0] / crop[0])),
                mean=preset.mean,
                std=preset.std,
                normalize=normalize,
                interpolation=preset.interpolation.value,
            )
    config = _timm_data_config(loaded.model)
    if config is not None:
        from timm.data import create_transform

        if image_size is not None:
            config["input_size"] = (config["input_size"][0], image_size, image_size)
        if resize is not None:
            config["crop_pct"] = config["input_size"][-1] / resize
        if not normalize:
            config["mean"], config["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        return create_transform(**config, is_training=False)
    height = loaded.input_size[-2] if len(loaded.input_size) == 3 else DEFAULT_INPUT_SIZE[1]
    width = loaded.input_size[-1] if len(loaded.input_size) == 3 else DEFAULT_INPUT_SIZE[2]
    size: Any = image_size or (height if height == width else (height, width))
    shorter = size if isinstance(size, int) else min(size)
    return image_transform(image_size=size, resize=resize or round(shorter * 256 / 224), normalize=normalize)


def _weights_preset(loaded: LoadedModel, weights: Any) -> Any:
    """The ``transforms()`` of the torchvision weights the spec carries, or ``None``."""
    weights = weights if weights is not None else getattr(loaded, "weights", None)
    if weights is None:
        return None
    if hasattr(weights, "transforms") and callable(weights.transforms):  # a WeightsEnum member
        return weights.transforms()
    if not isinstance(weights, str) or not loaded.spec.startswith("torchvision:"):
        return None  # a state-dict path: no preprocessing recorded with it
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(loaded.spec[len("torchvision:") :])
        member = enum.DEFAULT if weights.upper() == "DEFAULT" else enum[weights.split(".")[-1]]
    except (KeyError, ValueError, AttributeError):
        return None  # a path, or a model without weights
    return member.transforms()


def _timm_data_config(model: Any) -> Optional[dict[str, Any]]:
    """timm's eval data config for a model with a ``pretrained_cfg``, or ``None``."""
    if (
        not isinstance(getattr(model, "pretrained_cfg", None), dict)
        or importlib.util.find_spec("timm") is None
    ):
        return None
    from timm.data import resolve_data_config

    try:
        return dict(resolve_data_config({}, model=model))
    except Exception:  # pragma: no cover - a pretrained_cfg timm cannot read
        return None
