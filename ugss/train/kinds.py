"""The named choices of a training run, as ``StrEnum``: a member equals its string, so
configurations, checkpoints and the CLI keep plain strings and are converted here, at the door
(``choice``), with one error naming the choices."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from ugss.errors import ConfigError


class Method(StrEnum):
    UGSS = "ugss"
    SUPERVISED = "supervised"
    CUTMIX = "cutmix"
    CUTPASTE = "cutpaste"


class TeacherUpdate(StrEnum):
    NONE = "none"  # θ′ = θ
    EMA = "ema"  # eq. 11 with w_s = 1
    WEMA = "wema"  # eq. 11 (the paper's weighted EMA)


class Consistency(StrEnum):
    KL = "kl"
    SMOOTHL1 = "smoothl1"


DEFAULT_TEACHER_UPDATE = {
    Method.UGSS: TeacherUpdate.WEMA,
    Method.CUTMIX: TeacherUpdate.EMA,
    Method.CUTPASTE: TeacherUpdate.EMA,
    Method.SUPERVISED: TeacherUpdate.NONE,
}


E = TypeVar("E", bound=StrEnum)


def choice(kind: type[E], value: object, what: str) -> E:
    """``value`` as a member of ``kind``, or a ``ConfigError`` listing the choices."""
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(m.value for m in kind)
        raise ConfigError(f"{what} must be one of {names}, got {value!r}") from None
