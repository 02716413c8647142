"""Choosing nodes by pattern: exact names, globs, ``re:`` regexes and module types.

Importing this module does not import torch: it works on names only.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Callable, Optional, Union

from ._errors import FxtractTypeError, FxtractValueError, NodeNotFoundError, ReturnNodesError, did_you_mean

__all__ = ["expand_patterns", "is_pattern", "select_nodes"]

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
    names = list(names)
    known = set(names)

    chosen: set[str] = set()
    extra: list[str] = []  # exact names that are not in ``names``
    for pattern in pattern_list:
        matches = _matches(pattern, names, known)
        if matches is None:  # an exact name not in ``names``
            if strict:
                raise _not_found(f"node {pattern!r} is not in the model's graph.", pattern, names)
            if pattern not in extra:
                extra.append(pattern)
            continue
        if not matches:
            raise _not_found(f"pattern {pattern!r} matches no node name.", pattern, names)
        chosen.update(matches)

    if type_tuple:
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


def _not_found(message: str, pattern: str, names: list[str]) -> NodeNotFoundError:
    # Suggestions come from the literal part of the pattern (``layer*.relux`` -> ``layer.relux``).
    literal = pattern[len(_REGEX_PREFIX) :] if pattern.startswith(_REGEX_PREFIX) else pattern
    literal = re.sub(r"[\\*?\[\]^$+(){}|]", "", literal)
    return NodeNotFoundError(f"{message}{did_you_mean(literal, names)} {_HOW_TO_LIST}")


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
    items = (types,) if isinstance(types, type) else tuple(types)
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
