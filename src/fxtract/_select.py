"""Choosing nodes by pattern: exact names, globs, ``re:`` regexes and module types.

Importing this module does not import torch: it works on names only.
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Optional, Union

from ._errors import FxtractTypeError, FxtractValueError, NodeNotFoundError, ReturnNodesError, did_you_mean

__all__ = ["check_patterns", "expand_patterns", "is_pattern", "select_nodes"]

Patterns = Union[str, Iterable[str]]

_GLOB_CHARS = frozenset("*?[")
_REGEX_PREFIX = "re:"
_HOW_TO_LIST = "List the names with fxtract.get_graph_node_names(model) or `fxtract nodes MODEL`."


def is_pattern(text: str) -> bool:
    r"""Whether ``text`` is a glob (has any of ``*?[``) or a ``re:`` regex, not a plain name.

    Example:
        >>> is_pattern("layer*.relu"), is_pattern("re:layer\\d"), is_pattern("layer1.0.relu")
        (True, True, False)
    """
    return text.startswith(_REGEX_PREFIX) or any(c in _GLOB_CHARS for c in text)


def select_nodes(
    patterns: Optional[Patterns],
    names: Sequence[str],
    *,
    exclude: Patterns = (),
    types: Optional[Union[type, Iterable[type]]] = None,
    name_types: Optional[Mapping[str, type]] = None,
    strict: bool = False,
) -> list[str]:
    r"""Expand name patterns into concrete node names, in execution order.

    A pattern is one of:

    * an exact name (``"layer1.0.relu"``): kept as is, even when it is not in
      ``names`` (the extractor resolves module prefixes itself), unless ``strict``;
    * a glob (``"layer*.relu*"``, any of ``*?[``), matched with
      :func:`fnmatch.fnmatchcase` against whole names (``*`` also crosses dots);
    * a regex ``"re:<regex>"``, matched with :func:`re.fullmatch`.

    A name that is in ``names`` is always taken literally, even if it contains
    glob characters. No regex is ever built from a plain name.

    Args:
        patterns: one pattern or an iterable of them (``None``: none).
        names: the available names in execution order (node names and module-call names).
        exclude: patterns of the same kinds whose matches are removed from the result.
        types: module classes; selects the module calls (from ``name_types``) whose class
            is one of them or a subclass. Added to what ``patterns`` select.
        name_types: ``{name: module class}`` of the module calls, needed by ``types``.
        strict: also require exact names to be in ``names``.

    Returns:
        The selected names, deduplicated, in the order of ``names``; exact names that
        are not in ``names`` follow, in the order given.

    Raises:
        NodeNotFoundError: a glob, regex or type matches nothing (or, with ``strict``,
            an exact name is unknown). The message suggests close names.

    Example:
        >>> names = ["x", "conv1", "layer1.0.relu", "layer1.1.relu", "fc"]
        >>> select_nodes(["layer*.relu", "fc"], names)
        ['layer1.0.relu', 'layer1.1.relu', 'fc']
        >>> select_nodes("re:layer1\\.\\d\\.relu", names, exclude="*.1.*")
        ['layer1.0.relu']
    """
    pattern_list = _as_list(patterns, "patterns")
    exclude_list = _as_list(exclude, "exclude")
    type_tuple = _as_types(types)
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise FxtractTypeError(
            f"names must be a list of node names (fxtract.get_graph_node_names(model)[1]), got "
            f"{type(names).__name__} {names!r:.60}."
        )
    names = list(names)
    known = set(names)

    chosen: set[str] = set()
    extra: list[str] = []  # exact names that are not in ``names``
    for pattern in pattern_list:
        matches = _matches(pattern, names, known)
        if matches is None:  # an exact name not in ``names``
            if strict:
                raise _not_found(f"node {pattern!r} is not in the model's graph.", pattern, names, name_types)
            if pattern not in extra:
                extra.append(pattern)
            continue
        if not matches:
            raise _not_found(f"pattern {pattern!r} matches no node name.", pattern, names, name_types)
        chosen.update(matches)

    if type_tuple:
        if name_types is not None and not isinstance(name_types, Mapping):
            raise FxtractTypeError(
                f"name_types must be a dict {{name: module class}}, got {type(name_types).__name__}."
            )
        if name_types is None:
            raise FxtractValueError("select_nodes(types=...) needs name_types, the {name: module class} map.")
        by_type = [n for n, t in name_types.items() if isinstance(t, type) and issubclass(t, type_tuple)]
        if not by_type:
            wanted = ", ".join(t.__name__ for t in type_tuple)
            present = sorted({t.__name__ for t in name_types.values() if isinstance(t, type)})
            hint = did_you_mean(type_tuple[0].__name__, present)
            raise NodeNotFoundError(
                f"no module call is of type {wanted}.{hint} The model's module types are listed by "
                "{type(m).__name__ for m in model.modules()}."
            )
        chosen.update(by_type)

    removed: set[str] = set()
    for pattern in exclude_list:
        matches = _matches(pattern, names, known)
        if matches is None:
            if pattern not in extra:  # a typo excludes nothing: say so, as an unmatched glob does
                warnings.warn(
                    f"exclude name {pattern!r} is not a node name, so it excludes nothing."
                    f"{did_you_mean(pattern, names)} {_HOW_TO_LIST}",
                    stacklevel=_caller_level(),
                )
            removed.add(pattern)
            continue
        if not matches:
            raise _not_found(f"exclude pattern {pattern!r} matches no node name.", pattern, names)
        removed.update(matches)

    ordered = [n for n in dict.fromkeys(names) if n in chosen and n not in removed]
    return ordered + [n for n in extra if n not in removed]


def _matches(pattern: str, names: list[str], known: set[str]) -> Optional[list[str]]:
    """The names ``pattern`` matches; ``None`` for an exact name that is not in ``names``."""
    if pattern in known:
        return [pattern]
    if pattern.startswith(_REGEX_PREFIX):
        try:
            regex = re.compile(pattern[len(_REGEX_PREFIX) :])
        except re.error as e:
            raise FxtractValueError(f"bad regular expression in pattern {pattern!r}: {e}.") from None
        return [n for n in names if regex.fullmatch(n)]
    if is_pattern(pattern):
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return None


def _not_found(
    message: str, pattern: str, names: list[str], name_types: Optional[Mapping[str, type]] = None
) -> NodeNotFoundError:
    hint = _glob_hint(pattern, names, name_types or {}) if is_pattern(pattern) else ""
    if not hint:
        # Suggestions come from the literal part of the pattern (``layer*.relux`` -> ``layer.relux``).
        literal = pattern[len(_REGEX_PREFIX) :] if pattern.startswith(_REGEX_PREFIX) else pattern
        literal = re.sub(r"[\\*?\[\]^$+(){}|]", "", literal)
        hint = did_you_mean(literal, names)
    return NodeNotFoundError(f"{message}{hint} {_HOW_TO_LIST}")


def _glob_hint(pattern: str, names: list[str], name_types: Mapping[str, type]) -> str:
    """Names that end like a glob's last part: by module class (``relu*``: the ``ReLU`` modules), else by spelling.

    ``layer*.relu*`` on a model whose ReLU modules are called ``act1`` suggests
    ``layer1.0.act1``, not the ``layer4.1`` a prefix match would.
    """
    if pattern.startswith(_REGEX_PREFIX) or "." not in pattern:
        return ""
    head, _, rest = pattern.partition(".")
    tail = rest.rpartition(".")[2]
    lead = [n for n in names if fnmatch.fnmatchcase(n.split(".", 1)[0], head)] or names
    by_type = [
        n for n in lead if n in name_types and fnmatch.fnmatch(name_types[n].__name__.lower(), tail.lower())
    ]
    if by_type:
        kinds = sorted({name_types[n].__name__ for n in by_type})
        shown = ", ".join(repr(n) for n in by_type[:3])
        more = f" and {len(by_type) - 3} more" if len(by_type) > 3 else ""
        return (
            f" The {'/'.join(kinds)} modules there are {shown}{more}: names follow the model's attributes, "
            f"not the class, so select them with types=[{kinds[0]}] or a pattern like "
            f"{_pattern_for(by_type)!r}."
        )
    ends = [n for n in lead if fnmatch.fnmatchcase(n.rpartition(".")[2], tail)]
    if ends:
        return " Names that end like it: " + ", ".join(repr(n) for n in ends[:3]) + "."
    literal_tail = re.sub(r"[*?\[\]]", "", tail)
    close = {n for n in lead if literal_tail and did_you_mean(literal_tail, [n.rpartition(".")[2]])}
    if close:
        return " Did you mean " + ", ".join(repr(n) for n in [n for n in lead if n in close][:3]) + "?"
    return ""


def _pattern_for(names: list[str]) -> str:
    """A glob that matches ``names``: their common first part, ``*``, their common last-part prefix, ``*``."""
    firsts = [n.split(".", 1)[0] for n in names]
    lasts = [n.rpartition(".")[2] for n in names]
    head = _common_prefix(firsts)
    last = _common_prefix(lasts)
    return f"{head}*.{last}*" if all("." in n for n in names) else f"{last}*"


def _common_prefix(words: list[str]) -> str:
    first, last = min(words), max(words)
    k = 0
    while k < min(len(first), len(last)) and first[k] == last[k]:
        k += 1
    return first[:k].rstrip("0123456789") if k < len(first) or len(words) > 1 else first


def check_patterns(patterns: Optional[Patterns], arg: str) -> None:
    """Raise :class:`FxtractTypeError` unless ``patterns`` is ``None``, a string or an iterable of strings.

    Example:
        >>> check_patterns(["layer1", "fc"], "nodes")
        >>> check_patterns(5, "nodes")
        Traceback (most recent call last):
        ...
        fxtract._errors.FxtractTypeError: nodes must be a string or an iterable of strings, got int.
    """
    _as_list(patterns, arg)


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside fxtract (the user's call)."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("fxtract."):
        frame, level = frame.f_back, level + 1
    return level


def _as_list(patterns: Optional[Patterns], arg: str) -> list[str]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        return [patterns]
    try:
        items = list(patterns)
    except TypeError:
        raise FxtractTypeError(
            f"{arg} must be a string or an iterable of strings, got {type(patterns).__name__}."
        ) from None
    for item in items:
        if not isinstance(item, str):
            raise FxtractTypeError(f"{arg} must contain strings, got {item!r} ({type(item).__name__}).")
    return items


def _as_types(types: Optional[Union[type, Iterable[type]]]) -> tuple[type, ...]:
    if types is None:
        return ()
    if isinstance(types, type):
        items: tuple[Any, ...] = (types,)
    elif isinstance(types, Iterable) and not isinstance(types, str):
        items = tuple(types)
    else:
        raise FxtractTypeError(
            f"types must be a module class or a list of them (types=[nn.Conv2d]), got {type(types).__name__} "
            f"{types!r:.60}."
        )
    for item in items:
        if not isinstance(item, type):
            raise FxtractTypeError(f"types must contain classes, got {item!r} ({type(item).__name__}).")
    return items


def expand_patterns(
    queries: Mapping[str, str],
    catalog: Callable[[], tuple[Sequence[str], Mapping[str, type]]],
    *,
    literal: Iterable[str] = (),
) -> dict[str, str]:
    """``{query: key}`` with each glob / ``re:`` query replaced by the names it matches (each its own key).

    ``catalog()`` gives the selectable names in order and the module-call types; it is
    called only when a query is a pattern. A query that is itself a name (of the catalog,
    or in ``literal``: module paths such as ``md.[x]``) is that name, not a pattern.
    Every strategy's extractor uses this.

    Example:
        >>> expand_patterns({"x": "x", "b*": "b*"}, lambda: (["x", "b1", "b2"], {}))
        {'x': 'x', 'b1': 'b1', 'b2': 'b2'}
    """
    if not any(is_pattern(q) for q in queries):
        return dict(queries)
    names, types = catalog()
    exact = {*names, *types, *literal}
    out: dict[str, str] = {}
    for query, key in queries.items():
        if not is_pattern(query) or query in exact:  # a literal name (`md.[x]`) wins over a pattern
            out[query] = key
            continue
        if key != query:
            raise ReturnNodesError(
                f"pattern {query!r} matches several nodes, so it cannot map to one output key {key!r}; "
                "pass patterns in a list."
            )
        for name in select_nodes([query], names, name_types=types):
            out.setdefault(name, name)
    return out
