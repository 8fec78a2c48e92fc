"""Typer's option values without pydantic, for plain values: :func:`install`.

Typer 0.29 coerces every option's value, given or default, through a pydantic
``TypeAdapter``, which it builds per option (``typer.core.build_runtime_param``).
Importing pydantic and building an adapter for each of ``pcq local``'s ~20
options is most of what the command costs before it does anything:

    pcq local --items 1, fastest of 10 runs (2-core machine, 2026-11-28):
        with Typer's coercion  203 ms    with this module  124 ms
        (a bare multiprocessing script doing the same: 52 ms)

Every ``pcq`` process pays it, and the whole-process benchmarks count it
(docs/benchmarks.md, "Fourth stop"). So :func:`install` puts a wrapper in front
of Typer's builder. The wrapper answers only when the answer is plainly Typer's
own: ``None``; a default already of the option's type; a decimal string for an
``int`` or a ``float`` within the option's bounds; any string for a ``str``; an
exact value of an ``Enum``. Everything else (a malformed number, a path,
several values, a custom parser) goes to Typer's own coercion, built the first
time it is needed, so its results and its error messages stay Typer's.
``tests/test_cli_coercion.py`` checks both agree on every option of every
command. Should Typer drop the builder, :func:`install` leaves Typer as it is.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

__all__ = ["install", "installed"]

_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_SKIP = object()  # not answered here: Typer's own coercion decides


class PlainParam:
    """One option's coercion: plain values here, the rest by Typer's own (built on demand)."""

    def __init__(self, descriptor: Any, build: Any) -> None:
        self.descriptor = descriptor
        self._build = build  # Typer's builder
        self._typer: Any = None
        info = descriptor.parameter_info
        self._plain = descriptor.file_annotation is None and info.parser is None and not info.clamp
        self._bounds = (info.min, info.max)

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        """The option's value, as Typer's ``RuntimeParam.coerce`` would give it."""
        if self._plain and param.nargs == 1 and not param.multiple:
            if value is None:
                return None
            answer = self._answer(value, ctx)
            if answer is not _SKIP:
                return answer
        if self._typer is None:
            self._typer = self._build(self.descriptor)
        return self._typer.coerce(value, param=param, ctx=ctx)

    def _answer(self, value: Any, ctx: Any) -> Any:
        kind = self.descriptor.annotation
        if kind is str:
            return value if type(value) is str else _SKIP
        if kind is bool:
            return value if type(value) is bool else _SKIP
        if kind is int:
            if type(value) is str and _INT.match(value):
                value = int(value)
            return value if type(value) is int and self._within(value) else _SKIP
        if kind is float:
            # (An int: a default written as 0, say.)
            if type(value) is int or (type(value) is str and _FLOAT.match(value)):
                value = float(value)
            return value if type(value) is float and self._within(value) else _SKIP
        if isinstance(kind, type) and issubclass(kind, Enum):
            if isinstance(value, kind):
                return value
            exact = self.descriptor.parameter_info.case_sensitive and (
                ctx is None or ctx.token_normalize_func is None)  # fmt: skip
            if exact and type(value) is str:
                return next((m for m in kind if isinstance(m.value, str) and m.value == value), _SKIP)
        return _SKIP

    def _within(self, number: float) -> bool:
        low, high = self._bounds
        return (low is None or number >= low) and (high is None or number <= high)


_wrapper: list[Any] = []  # the wrapper in place, once installed


def install() -> bool:
    """Put :class:`PlainParam` in front of Typer's coercion; False if Typer has no such seam."""
    import typer.core as typer_core

    if _wrapper:
        return True
    try:
        build = typer_core.build_runtime_param  # type: ignore[attr-defined,unused-ignore]
    except AttributeError:  # a Typer without it: its own coercion, all of it
        return False

    def plain_first(descriptor: Any) -> PlainParam:
        return PlainParam(descriptor, build)

    typer_core.build_runtime_param = plain_first  # type: ignore[assignment,unused-ignore]
    _wrapper.append(plain_first)
    return True


def installed() -> bool:
    """Whether :func:`install` has put its wrapper in place (in this process)."""
    import typer.core as typer_core

    return bool(_wrapper) and typer_core.build_runtime_param is _wrapper[0]  # type: ignore[attr-defined,unused-ignore]
