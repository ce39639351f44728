"""``frozen_record``: a frozen, slotted dataclass with a constructor twice as fast.

A ``@dataclass(frozen=True)`` ``__init__`` stores each field with
``object.__setattr__(self, name, value)``, a generic call with a name lookup
per field; on the engine's hot path (a new state, step and pending stage per
event) that is a sizeable share of the time. ``frozen_record`` builds the same
dataclass (``frozen=True, slots=True``: equality, hashing, ``repr``,
``dataclasses.replace``, immutability are unchanged) and then gives it an
``__init__`` that stores each field through its slot descriptor directly.

Only plain defaults are supported (no ``default_factory``, no ``kw_only``, no
``__post_init__``), which is all the engine's records use.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def frozen_record(cls: type[T]) -> type[T]:
    record = dataclasses.dataclass(frozen=True, slots=True)(cls)
    fields = dataclasses.fields(record)
    namespace: dict[str, Any] = {}
    params = []
    body = []
    for field in fields:
        if field.default_factory is not dataclasses.MISSING or field.kw_only:
            raise TypeError(f"{cls.__name__}.{field.name}: only plain defaults are supported")
        if field.default is dataclasses.MISSING:
            params.append(field.name)
        else:
            namespace[f"_default_{field.name}"] = field.default
            params.append(f"{field.name}=_default_{field.name}")
        namespace[f"_set_{field.name}"] = getattr(record, field.name).__set__
        body.append(f"    _set_{field.name}(self, {field.name})")
    if hasattr(record, "__post_init__"):
        raise TypeError(f"{cls.__name__}: __post_init__ is not supported")
    source = f"def __init__(self, {', '.join(params)}) -> None:\n" + "\n".join(body or ["    pass"])
    exec(source, namespace)  # the same technique dataclasses itself uses
    init = namespace["__init__"]
    init.__qualname__ = f"{record.__qualname__}.__init__"
    init.__doc__ = record.__init__.__doc__
    record.__init__ = init  # type: ignore[misc]
    return record
