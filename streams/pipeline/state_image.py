"""A partition's engine state as plain data and back, for the local snapshot.

The state is objects: ``PartitionState``, the KPI states, their counters, packed columns
and remembered ids. A snapshot needs them as data that loads without running anything but
the ``array`` and numpy constructors. ``capture`` walks an object's attributes (mypyc's
``__mypyc_attrs__``, or ``__slots__`` and ``__dict__`` when run as plain Python) into
``Shape`` records and leaves every other value as it is, so big columns and dicts are
written as they stand, not copied first. ``fill`` pours a captured image into a freshly
constructed state of the same configuration: each object is built by its own constructor,
compiled or not, and only its attributes come from the image.

Frozen dataclasses are configuration (the detractor follow-up policy), not state: an image
records them as text, and one taken under another configuration does not fit, because
state derived under it (cases counted against another follow-up target) would be wrong
now. Anything that does not fit (another class, an
unknown attribute, a value of another type, a global the reader does not allow) raises
``ImageMismatch``, and the caller replays the changelog instead.
"""

from __future__ import annotations

import copyreg
import dataclasses
import pickle
from array import array
from collections.abc import Iterator
from typing import IO, Any, Final

PROTOCOL: Final = 5
#: The only globals an image may name: the constructors of arrays and numpy arrays.
_ALLOWED: Final = frozenset(
    {
        ("array", "array"),
        ("numpy", "dtype"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
    }
)
_NOT_STATE: Final = frozenset({"__dict__", "__weakref__"})


class ImageMismatch(Exception):
    """The image does not fit the state this worker builds: replay the changelog instead."""


class Config:
    """A configuration value an image was taken under, as its ``repr``."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __reduce__(self) -> tuple[type[Config], tuple[str]]:
        return Config, (self.text,)


class Shape:
    """One captured object: its class name and its attributes' captured values."""

    __slots__ = ("attrs", "cls")

    def __init__(self, cls: str, attrs: dict[str, Any]) -> None:
        self.cls = cls
        self.attrs = attrs

    def __reduce__(self) -> tuple[type[Shape], tuple[str, dict[str, Any]]]:
        return Shape, (self.cls, self.attrs)


def _attributes(value: Any) -> Iterator[str] | None:
    """The attribute names of one of the engine's state objects; None for plain data."""
    cls = type(value)
    if not cls.__module__.startswith("salespulse."):
        return None
    names = getattr(cls, "__mypyc_attrs__", None)
    if names is None:
        slots = [name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())]
        names = [*slots, *getattr(value, "__dict__", {})]
    return (name for name in names if name not in _NOT_STATE and hasattr(value, name))


def _is_config(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and bool(value.__dataclass_params__.frozen)  # type: ignore[union-attr]


def capture(value: Any) -> Any:
    """``value`` with every state object in it as a :class:`Shape`; plain data as it is.

    Containers are walked only where they hold state objects (the KPI states by name,
    the counters by family, per-topic offsets and ids); those never sit in a list.
    """
    names = _attributes(value)
    if names is not None:
        attrs = {name: getattr(value, name) for name in names}
        return Shape(
            type(value).__qualname__,
            {name: Config(repr(v)) if _is_config(v) else capture(v) for name, v in attrs.items()},
        )
    if isinstance(value, dict) and value and _attributes(next(iter(value.values()))) is not None:
        return {key: capture(v) for key, v in value.items()}
    return value


def fill(target: Any, shape: Shape) -> None:
    """Set ``target``'s attributes from ``shape``, filling nested state objects in place."""
    if type(target).__qualname__ != shape.cls:
        raise ImageMismatch(
            f"the image holds a {shape.cls} where this worker has a {type(target).__qualname__}"
        )
    for name, value in shape.attrs.items():
        if not hasattr(target, name):
            raise ImageMismatch(f"{shape.cls} has no attribute {name!r} any more")
        try:
            setattr(target, name, _merged(getattr(target, name), value))
        except (TypeError, AttributeError) as exc:
            raise ImageMismatch(f"{shape.cls}.{name}: {exc}") from exc


def _merged(current: Any, value: Any) -> Any:
    if isinstance(value, Config):
        if repr(current) != value.text:
            raise ImageMismatch(f"taken under {value.text}, while this worker runs {current!r}")
        return current
    if isinstance(value, Shape):
        fill(current, value)
        return current
    if isinstance(value, dict) and value and isinstance(next(iter(value.values())), Shape):
        for key, shape in value.items():
            try:
                fill(current[key], shape)  # a defaultdict makes a missing one, a dict refuses
            except KeyError as exc:
                raise ImageMismatch(f"no state for {key!r} in this worker") from exc
        return current
    return value


def _array_by_buffer(column: array[Any]) -> tuple[type[array[Any]], tuple[str, pickle.PickleBuffer]]:
    """An array as its raw buffer, written as it stands: ``array``'s own pickling makes a
    bytes copy that the pickler then keeps until the whole image is written (2x the
    columns' memory while a snapshot is taken)."""
    return array, (column.typecode, pickle.PickleBuffer(column))


def dump(image: Any, file: IO[bytes]) -> None:
    pickler = pickle.Pickler(file, protocol=PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, array: _array_by_buffer}
    pickler.dump(image)


class _Reader(pickle.Unpickler):
    """An unpickler that builds nothing but plain data, arrays and shapes."""

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name in {"Shape", "Config"}:
            return Shape if name == "Shape" else Config
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise ImageMismatch(f"a state image may not name {module}.{name}")


def load(file: IO[bytes]) -> Any:
    try:
        return _Reader(file).load()
    except ImageMismatch:
        raise
    except Exception as exc:  # whatever a damaged image raises, it is not state
        raise ImageMismatch(f"the image cannot be read: {exc!r}") from exc
