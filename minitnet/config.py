"""The hyperparameters of an ItNet (paper Section II-A, Figure 2; spec ARCHITECTURE.md).

One frozen dataclass, validated on construction. Everything else (the graph IR,
the PyTorch model, the metrics, the emulator) is derived from it.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import operator
from dataclasses import dataclass

from .errors import ConfigError, ShapeError

__all__ = ["ItNetConfig"]


@dataclass(frozen=True)
class ItNetConfig:
    """Architecture of an ItNet.

    levels:     L, number of scales processed in parallel by the iterative block.
    blocks:     K, bottleneck residual blocks (BRB) per scale and iteration (0 allowed).
    iterations: N, executions of the iterative block.
    width:      f, channels of the data block; each scale carries f_r = f // 2.
    classes:    C, output classes (11 for CamVid, 19 for Cityscapes).
    shared:     True: one iterative block reused N times (a loop in the graph);
                False: N independent copies (the loop unrolled).
    heads:      iterations (1-based) that own a classification head; None = all.
    expansion:  t, the BRB expansion factor (MobileNetV2; the paper uses 6).
    """

    levels: int = 3
    blocks: int = 1
    iterations: int = 16
    width: int = 51
    classes: int = 11
    shared: bool = True
    heads: tuple[int, ...] | None = None
    expansion: int = 6

    def __post_init__(self):
        for name in ("levels", "blocks", "iterations", "width", "classes", "expansion"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"ItNetConfig: {name} must be an int, got {v!r} ({type(v).__name__})")
        if not isinstance(self.shared, bool):
            raise ConfigError(f"ItNetConfig: shared must be True or False, got {self.shared!r}")
        if self.levels < 1:
            raise ConfigError(f"ItNetConfig: levels must be >= 1, got {self.levels}")
        if self.blocks < 0:
            raise ConfigError(f"ItNetConfig: blocks must be >= 0, got {self.blocks}")
        if self.iterations < 1:
            raise ConfigError(f"ItNetConfig: iterations must be >= 1, got {self.iterations}")
        if self.width < 4:
            raise ConfigError(
                f"ItNetConfig: width={self.width} is too small: the first stem conv has width - 3 "
                f"output channels (the other 3 come from max-pooling the RGB image), so width must be >= 4"
            )
        if self.classes < 1:
            raise ConfigError(f"ItNetConfig: classes must be >= 1, got {self.classes}")
        if self.expansion < 1:
            raise ConfigError(f"ItNetConfig: expansion must be >= 1, got {self.expansion}")
        if self.heads is not None:
            try:  # operator.index: ints only (1.5 or "2" are not iteration numbers)
                heads = tuple(operator.index(h) for h in self.heads)
                if any(isinstance(h, bool) for h in self.heads):
                    raise TypeError("bool")
            except (TypeError, ValueError):
                raise ConfigError(f"ItNetConfig: heads must be a sequence of iteration numbers, got {self.heads!r}") from None
            bad = [h for h in heads if not 1 <= h <= self.iterations]
            if bad:
                raise ConfigError(
                    f"ItNetConfig: heads {bad} are outside 1..{self.iterations} (iterations={self.iterations})"
                )
            if not heads:
                raise ConfigError("ItNetConfig: heads must name at least one iteration (or be None for all)")
            if len(set(heads)) != len(heads):
                raise ConfigError(f"ItNetConfig: heads has duplicates: {list(heads)}")
            object.__setattr__(self, "heads", tuple(sorted(heads)))

    # -- derived quantities -------------------------------------------------
    @property
    def f_r(self) -> int:
        """Channels per scale in the iterative block, floor(f / 2)."""
        return self.width // 2

    @property
    def hidden(self) -> int:
        """BRB hidden channels, t * f_r."""
        return self.expansion * self.f_r

    @property
    def head_iterations(self) -> tuple[int, ...]:
        """The iterations (1-based, ascending) that own an output head."""
        return tuple(range(1, self.iterations + 1)) if self.heads is None else self.heads

    @property
    def bodies(self) -> int:
        """Number of distinct iterative-block weight sets: 1 shared, N independent."""
        return 1 if self.shared else self.iterations

    def body_index(self, n: int) -> int:
        """Weight set (0-based) used by iteration n (1-based)."""
        return 0 if self.shared else n - 1

    def check_last(self, last, where: str = "ItNet") -> int:
        """``last`` as an int iteration in 1..N; ShapeError naming ``where`` otherwise."""
        N = self.iterations
        if isinstance(last, bool) or not isinstance(last, numbers.Integral) or not 1 <= last <= N:
            raise ShapeError(f"{where}: last={last!r} must be an iteration in 1..{N}")
        return int(last)

    def body_has_mix(self, b: int) -> bool:
        """Whether body b owns a scale-mixing conv (used by some iteration n > 1)."""
        if self.shared:
            return self.iterations > 1
        return b >= 1

    # -- (de)serialisation ----------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["heads"] = None if self.heads is None else list(self.heads)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ItNetConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"ItNetConfig: expected a dict of fields, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ConfigError(f"ItNetConfig: unknown fields {unknown}; valid fields are {sorted(fields)}")
        d = dict(d)
        if d.get("heads") is not None:
            if isinstance(d["heads"], (str, bytes, dict)) or not hasattr(d["heads"], "__iter__"):
                raise ConfigError(f"ItNetConfig: heads must be a list of iteration numbers or null, got {d['heads']!r}")
            d["heads"] = tuple(d["heads"])
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "ItNetConfig":
        try:
            d = json.loads(s)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"ItNetConfig: not valid JSON ({e}): {s[:200]!r}") from None
        return cls.from_dict(d)
