"""One validator for plain data (what yaml.safe_load and json.loads give), field by field.

A `Field` is a value and where it sits: the label errors show (`segments[2].params.gamma`)
and its path from the document's root (`("segments", 2, "params", "gamma")`). Readers
return the value checked or raise FieldError carrying that path, so each caller says
where in its own terms: the YAML loader adds `file:line:` (yamldoc), the manifest reader
its file, the protocol its `bad_args` code. Every value rule lives here once; each record
(Segment, Schedule, Manifest, a command's arguments) lists its fields beside its class.
No torch and no YAML here.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NoReturn

from lrconsole.core.plan import shapes
from lrconsole.errors import UserError

Key = str | int
FieldPath = tuple[Key, ...]

# Every limit on input, in one place (README: "Bad input").
LR_MAX = 10.0
LR_MIN = 1e-12  # below this an LR is a typo or an underflow, not a choice
EPOCHS_MAX = 100_000  # per segment
STEPS_MAX = 100_000_000  # per segment, for segments given in steps
SEGMENTS_MAX = 10_000  # in a schedule file, and in a plan grown by `queue`
FILE_MAX = 10_000_000  # bytes of a schedule or manifest file
NODES_MAX = 1_000_000  # YAML values after aliases are expanded (a "billion laughs" file)
SEED_MAX = 2**63 - 1  # torch.manual_seed takes 64 bits
THREADS_MAX = 256
ID_MAX = 2**53  # a protocol request id: |id| below this (exact in every JSON reader)
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
NOTE_MAX = 500  # characters of a segment's note
WEIGHT_DECAY_MAX = 10.0  # past this a weight decay is a typo, not a choice
CLIP_MAX = 1e12  # a max gradient norm past this never clips: null says so
# The per-segment optimizer settings each built-in optimizer's param groups hold.
OPTIMIZER_SETTINGS: dict[str, tuple[str, ...]] = {
    "sgd": ("momentum", "weight_decay"),
    "adam": ("betas", "weight_decay"),
    "adamw": ("betas", "weight_decay"),
    "rmsprop": ("momentum", "weight_decay"),
}

# Performance-based policies a segment may enable, with their parameters' defaults
# (names as in Keras' ReduceLROnPlateau and EarlyStopping).
POLICIES: dict[str, dict[str, float]] = {
    "plateau": {"factor": 0.1, "patience": 10, "min_delta": 0.0, "min_lr": 0.0},
    "early_stop": {"patience": 10, "min_delta": 0.0},
}


class ScheduleError(UserError):
    """A schedule or segment that cannot be used."""


class YamlError(UserError):
    """A YAML file that is malformed or does not fit its schema: `file:line: what`."""


class FieldError(ScheduleError):
    """A value that breaks a rule. `path` leads to it from the document's root (to find
    its line); `on_key`: the fault is the key itself (an unknown field), not its value."""

    def __init__(self, message: str, path: FieldPath = (), on_key: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.on_key = on_key


def show(value: Any) -> str:
    """A value for a message: its repr, cut short (the wire may send megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def child_label(parent: str, key: Key) -> str:
    """`segments` + 2 -> `segments[2]`; `segments[2]` + `lr` -> `segments[2].lr`."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


class Field:
    """A value, its label and its path; every reader returns it checked or fails."""

    __slots__ = ("value", "where", "path", "_base")

    def __init__(
        self, value: Any, where: str = "", path: FieldPath = (), *, base: str | None = None
    ) -> None:
        self.value = value
        self.where = where
        self.path = path
        self._base = where if base is None else base  # what children's labels extend

    @classmethod
    def document(cls, value: Any, name: str) -> Field:
        """A whole document: errors about it say `name`; its fields are named from the top."""
        return cls(value, name, base="")

    def at(self, key: Key, default: Any = None) -> Field:
        """The field `key` (an index in a list), or one holding `default` when absent."""
        if isinstance(self.value, list) and isinstance(key, int):
            value = self.value[key] if -len(self.value) <= key < len(self.value) else default
            return Field(value, child_label(self._base, key), (*self.path, key))
        name = str(key)  # in a path, ints are list indexes only
        value = self.value.get(key, default) if isinstance(self.value, dict) else default
        return Field(value, child_label(self._base, name), (*self.path, name))

    def with_value(self, value: Any) -> Field:
        """Another value read at this same place (a shorthand expanded)."""
        return Field(value, self.where, self.path, base=self._base)

    # -- failing ---------------------------------------------------------------------
    def fail(self, message: str) -> NoReturn:
        raise FieldError(f"{self.where}: {message}" if self.where else message, self.path)

    def fail_key(self, key: Any, message: str) -> NoReturn:
        """Fail about one of this mapping's keys, on that key's line."""
        prefix = f"{self.where}: " if self.where else ""
        raise FieldError(prefix + message, (*self.path, str(key)), on_key=True)

    def refuse(self, message: str) -> NoReturn:
        """Fail with `message` as it is (it names the field in its own words)."""
        raise FieldError(message, self.path)

    # -- containers ------------------------------------------------------------------
    def fields(
        self,
        required: tuple[str, ...] = (),
        optional: tuple[str, ...] = (),
        *,
        noun: str = "field",
    ) -> dict[str, Field]:
        """A record: only known keys, every required one; the fields present, by name."""
        if not isinstance(self.value, dict):
            self.fail(f"must be a mapping of {noun}s")
        known = (*required, *optional)
        for key in self.value:
            if key not in known:
                listed = f" (known: {', '.join(known)})" if known else ""
                self.fail_key(key, f"unknown {noun} {show(key)}{listed}")
        for key in required:
            if key not in self.value:
                self.fail(f"missing {noun} {key!r}")
        return {key: self.at(key) for key in known if key in self.value}

    def mapping(self) -> dict[Any, Any]:
        """Free-form keys (a task's arguments): only the type is checked."""
        if not isinstance(self.value, dict):
            self.fail(f"must be a mapping, got {show(self.value)}")
        return self.value

    def items(self) -> list[tuple[Any, Field]]:
        return [(key, self.at(key)) for key in self.mapping()]

    def sequence(self) -> list[Field]:
        if not isinstance(self.value, list):
            self.fail(f"must be a list, got {show(self.value)}")
        return [self.at(i) for i in range(len(self.value))]

    # -- scalars ---------------------------------------------------------------------
    def whole(self, minimum: int | None = None) -> int:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"must be a whole number, got {show(value)}")
        if minimum is not None and value < minimum:
            self.fail(f"must be at least {minimum}, got {value}")
        return value

    def number(self, finite: bool = True) -> float:
        """An int or float (numpy's too), never true/false; finite unless told."""
        value = self.value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.fail(f"must be a number, got {show(value)}")
        if finite and not math.isfinite(value):
            self.fail(f"must be a finite number, got {value!r}")
        return value  # type: ignore[return-value]  # an int stays an int

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            self.fail(f"must be true or false, got {show(self.value)}")
        return self.value

    def string(self) -> str:
        if not isinstance(self.value, str):
            self.fail(f"must be a string, got {show(self.value)}")
        return self.value

    def text(self, default: str = "") -> str:
        """Any scalar as text (a hand-written date or version number), null: `default`."""
        if self.value is None:
            return default
        if isinstance(self.value, (dict, list)):
            self.fail(f"must be text, got {show(self.value)}")
        return str(self.value)


# -- the value rules ----------------------------------------------------------------------
def read_lr(f: Field) -> float:
    value = f.number()
    if value <= 0:
        f.fail(f"must be > 0, got {value!r}")
    if value > LR_MAX:
        f.fail(f"{value!r} is absurdly large (the limit is {LR_MAX:g})")
    if value < LR_MIN:
        f.fail(f"{value!r} is absurdly small (the minimum is {LR_MIN:g})")
    return float(value)


def read_epochs(f: Field) -> int:
    value = f.whole(minimum=1)
    if value > EPOCHS_MAX:
        f.fail(f"{value!r} is too many (the limit is {EPOCHS_MAX:,})")
    return value


def read_steps(f: Field) -> int:
    value = f.whole(minimum=1)
    if value > STEPS_MAX:
        f.fail(f"{value!r} is too many (the limit is {STEPS_MAX:,})")
    return value


def read_bounded(f: Field, low: int, high: int) -> int:
    value = f.whole(minimum=low)
    if value > high:
        f.fail(f"{value!r} is too large (the limit is {high:,})")
    return value


def read_segment_list(
    f: Field, allow_empty: bool = False, limit: int | None = SEGMENTS_MAX
) -> list[Field]:
    """The list's items (each read by Segment.read); `limit`: None for a manifest, whose
    plan may pass SEGMENTS_MAX by the splits of set_lr (its file size is capped)."""
    items = f.sequence()
    if not items and not allow_empty:
        f.fail("needs at least one segment")
    if limit is not None and len(items) > limit:
        f.fail(f"{len(items):,} segments are too many (the limit is {limit:,})")
    return items


def check_lr(value: float, where: str = "lr") -> float:
    """`value` as a float, or ScheduleError naming `where` when it is unusable."""
    return read_lr(Field(value, where))


def check_epochs(value: int, where: str = "epochs") -> int:
    return read_epochs(Field(value, where))


def read_shape(f: Field) -> str:
    if not isinstance(f.value, str) or f.value not in shapes.SHAPES:
        f.fail(f"unknown shape {show(f.value)} (known: {', '.join(shapes.SHAPES)})")
    return f.value


def read_params(shape: str, f: Field) -> dict[str, Any]:
    """A shape's parameters (null: none), each checked by the shape's own rules."""
    if f.value is None:
        return {}
    if not isinstance(f.value, dict):
        f.fail("must be a mapping")
    for key, value in f.value.items():
        try:
            shapes.check_params(shape, {key: value})
        except ValueError as exc:
            raise FieldError(f"{f.where}: {exc}", (*f.path, str(key))) from None
    return dict(f.value)


def read_policy(name: str, f: Field) -> dict[str, float]:
    """A policy's parameters merged over the defaults (true: the defaults), each checked."""
    value = {} if f.value is True else f.value
    if not isinstance(value, dict):
        f.fail("must be a mapping of parameters (or true for defaults)")
    merged = dict(POLICIES[name])
    given = f.with_value(value).fields(optional=tuple(merged), noun="parameter")
    merged.update({key: field.number() for key, field in given.items()})
    patience = merged["patience"]
    if patience < 1 or patience != int(patience):
        f.at("patience").fail("must be a whole number >= 1")
    merged["patience"] = int(patience)
    if merged["min_delta"] < 0:
        f.at("min_delta").fail("must be >= 0")
    if name == "plateau" and not 0 < merged["factor"] < 1:
        f.at("factor").fail(f"must be between 0 and 1, got {merged['factor']}")
    if name == "plateau" and merged["min_lr"] < 0:
        f.at("min_lr").fail("must be >= 0")
    return merged


def read_optimizer_arg(f: Field) -> Any:
    """The types every argument of torch's sgd, adam, adamw and rmsprop needs: a finite
    number, true/false or null, and for `betas` two numbers. Values torch refuses for
    other reasons (a negative momentum) are caught when it is built."""
    value = f.value
    if f.path and f.path[-1] == "betas":
        pair = isinstance(value, list) and len(value) == 2
        if not pair or not all(_finite_number(v) for v in value):
            f.fail(f"must be a list of two numbers, like [0.9, 0.999], got {show(value)}")
    elif isinstance(value, float) and not math.isfinite(value):
        f.fail(f"must be a finite number, got {value!r}")
    elif value is not None and not isinstance(value, (bool, int, float)):
        f.fail(f"must be a number, true/false or null, got {show(value)}")
    return value


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def read_spike_factor(f: Field) -> float | None:
    """The divergence guard's factor: a number > 1, or null for off."""
    value = f.value
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 1
    ):
        f.fail("must be a number > 1, or null for off")
    return value


# The gradient guard (core.train.guard.GradGuard): top-level fields of a schedule and the
# manifest, with their defaults; null turns the first two off. Only those given are kept.
GRAD_GUARD_FIELDS: dict[str, Any] = {
    "grad_spike_factor": 10.0,
    "grad_vanish": None,
    "grad_vanish_patience": 3,
}


def read_grad_guard(top: dict[str, Field]) -> dict[str, Any]:
    """The gradient guard's fields present in `top`, checked."""
    out: dict[str, Any] = {}
    if "grad_spike_factor" in top:
        out["grad_spike_factor"] = read_spike_factor(top["grad_spike_factor"])
    if "grad_vanish" in top:
        f = top["grad_vanish"]
        if f.value is not None and not f.number() > 0:
            f.fail("must be a number > 0, or null for off")
        out["grad_vanish"] = f.value
    if "grad_vanish_patience" in top:
        out["grad_vanish_patience"] = read_bounded(top["grad_vanish_patience"], 1, EPOCHS_MAX)
    return out
