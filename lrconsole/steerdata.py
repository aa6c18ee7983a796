"""The data side of a user's own loop (`lrconsole.Steer(loader=...)`): the loader, iterated
by `steer.batches()`, and where it stands, kept in every checkpoint.

A loader with `state_dict()` and `load_state_dict()` (torchdata's `StatefulDataLoader`,
found by duck typing: torchdata is never imported here) can say where it is inside a pass
and go on from there. Steer then checkpoints in the middle of an epoch too, and a resumed or
rolled-back run continues with the very next batch. A plain `DataLoader` cannot: where it
stands is the shuffle its pass drew and how far the pass got, lost with the process, so
with it Steer checkpoints at epoch ends only and a resumed run starts a fresh pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from lrconsole.core.train import events as ev
from lrconsole.core.train.engine import Engine


def is_stateful(loader: object) -> bool:
    """Whether `loader` can save and restore its position (state_dict/load_state_dict)."""
    return callable(getattr(loader, "state_dict", None)) and callable(
        getattr(loader, "load_state_dict", None)
    )


class LoopData:
    """Hands out an epoch's batches from `loader`, across passes: an epoch of N steps (a
    "virtual epoch") may end inside a pass, or span several, and a stream never ends."""

    def __init__(self, loader: Iterable[Any] | None, stateful: bool) -> None:
        self.loader = loader
        self.stateful = stateful and loader is not None
        self._batches: Iterator[Any] | None = None
        self._restored = False  # the loader was just set back: its next pass may be empty
        self.in_flight = False  # a batch was handed out, its step is not counted yet
        self.rewound = False  # rolled back during a step: the checkpoint's RNG is due

    def attach(self, engine: Engine) -> None:
        """Keep the loader's place in every checkpoint, and go back to it with one."""
        engine.mid_epoch_checkpoints = self.stateful
        if self.loader is None:
            return
        engine.hooks.loop_state = self.state_dict
        self.load(engine.loop_state)  # resuming: where the loader stood

        def rolled_back(event: ev.RolledBack) -> None:
            self.load(engine.loop_state)
            self.rewound = True

        engine.on(ev.RolledBack, rolled_back)

    def keep(self, engine: Engine, place: Callable[[], Any]) -> None:
        """A trainer that iterates a stateful loader itself (lrconsole.integrations): its
        `place()` is every checkpoint's "loop", and checkpoints fall mid-epoch too."""
        self.stateful = True
        engine.mid_epoch_checkpoints = True
        engine.hooks.loop_state = place

    def state_dict(self) -> dict[str, Any]:
        """The "loop" of a checkpoint: the loader's position, when it can tell it."""
        if not self.stateful:
            return {}
        assert self.loader is not None
        return {"loader": self.loader.state_dict()}  # type: ignore[attr-defined]

    def load(self, state: Any) -> None:
        """Stand where a checkpoint's "loop" says (a resume, a rollback): the next batch
        comes from a new pass over the loader, which continues from there when it is
        stateful, and starts afresh otherwise."""
        self._batches = None
        self.in_flight = False
        saved = state.get("loader") if isinstance(state, dict) else None
        if self.stateful and saved is not None:
            assert self.loader is not None
            self.loader.load_state_dict(saved)  # type: ignore[attr-defined]
            self._restored = True

    def step_done(self) -> None:
        self.in_flight = False

    def batches(self, remaining: Callable[[], int]) -> Iterator[Any]:
        """Batches while `remaining()` (steps left in the epoch) is above 0."""
        if self.loader is None:
            raise ValueError("steer.batches() needs the loader: Steer(..., loader=loader)")
        fresh = False
        while remaining() > 0:
            if self._batches is None:
                self._batches = self._new_pass()
                fresh = True
            try:
                batch = next(self._batches)
            except StopIteration:
                self._batches = None
                if fresh and not self._restored:
                    raise ValueError("the loader gave no batch: an empty dataset?") from None
                # A pass saved at its last batch resumes as an empty pass: the next is new.
                self._restored = False
                continue
            fresh = self._restored = False
            self.in_flight = True
            yield batch

    def _new_pass(self) -> Iterator[Any]:
        assert self.loader is not None
        if not self._restored:
            return iter(self.loader)
        # A pass that was in progress when the checkpoint was taken: the unbroken run drew
        # the loader's seed from torch's RNG before then, so continuing it must not draw again.
        rng = torch.get_rng_state()
        try:
            return iter(self.loader)
        finally:
            torch.set_rng_state(rng)
