"""What a synth-v2 photo shows: its named features, drawn per sample, and how a caller
holds some out (training sets) or asks for them in every photo (evaluation sets).

Every decision is drawn from a fixed number of uniforms in a fixed order, before any
override is applied: holding a feature out changes that feature in the photos that had
it and nothing else in any photo.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable

import numpy as np

__all__ = [
    "DEFAULT_SIZES",
    "LOW_RESOLUTION_SIZES",
    "Feature",
    "Plan",
    "Selection",
    "draw_plan",
    "parse_features",
]

# archive JPEGs as small as 500 px as well as the 12 MP of today's colposcope cameras
DEFAULT_SIZES: tuple[tuple[int, int], ...] = (
    (1600, 1200),
    (2048, 1536),
    (2592, 1944),
    (3264, 2448),
    (4000, 3000),
    (4128, 3096),
)
LOW_RESOLUTION_SIZES: tuple[tuple[int, int], ...] = (
    (480, 360),
    (500, 375),
    (640, 480),
    (720, 540),
    (800, 600),
)


class Feature(enum.StrEnum):
    """A generator setting a photo has or has not; the names are the CLI's words."""

    CLOSE_UP = "close_up"  # cervix 50-95 % of the frame, no speculum
    FULL_VIEW = "full_view"  # circular vignette, walls with rugae, cervix 10-40 %
    METAL_SPECULUM = "metal_speculum"
    PLASTIC_SPECULUM = "plastic_speculum"  # clear blades full of wet reflections
    LESION = "lesion"  # acetowhite epithelium (the lesion mask is empty without it)
    GLARE_CLUSTER = "glare_cluster"  # clusters of specular highlights on mucus
    MUCUS = "mucus"
    BLOOD = "blood"
    ECTROPION = "ectropion"  # red columnar epithelium around the os
    NABOTHIAN_CYSTS = "nabothian_cysts"
    GREEN_FILTER = "green_filter"
    STRONG_JPEG = "strong_jpeg"
    LOW_RESOLUTION = "low_resolution"
    DEFOCUS = "defocus"
    MOTION_BLUR = "motion_blur"


# how often each on/off feature appears in the default mix
_CHANCE: dict[Feature, float] = {
    Feature.LESION: 0.7,
    Feature.GLARE_CLUSTER: 0.45,
    Feature.MUCUS: 0.45,
    Feature.BLOOD: 0.2,
    Feature.ECTROPION: 0.55,
    Feature.NABOTHIAN_CYSTS: 0.3,
    Feature.GREEN_FILTER: 0.1,
    Feature.STRONG_JPEG: 0.25,
    Feature.LOW_RESOLUTION: 0.2,
    Feature.DEFOCUS: 0.25,
    Feature.MOTION_BLUR: 0.12,
}
_FULL_VIEW_CHANCE = 0.4
_SPECULUM_CHANCES = (0.5, 0.4)  # metal, plastic; the rest of full views show none
_SPECULUMS = (Feature.METAL_SPECULUM, Feature.PLASTIC_SPECULUM)


def parse_features(text: str | Iterable[str] | None) -> frozenset[Feature]:
    """``'green_filter,plastic_speculum'`` (or several such strings) as a set of features."""
    if text is None:
        return frozenset()
    parts = [text] if isinstance(text, str) else list(text)
    names = [name.strip() for part in parts for name in part.split(",") if name.strip()]
    known = {f.value: f for f in Feature}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"unknown synth feature {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(f.value for f in Feature)}"
        )
    return frozenset(known[name] for name in names)


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    """Features never drawn (``hold_out``) and features every photo has (``only``)."""

    hold_out: frozenset[Feature] = frozenset()
    only: frozenset[Feature] = frozenset()

    def __post_init__(self) -> None:
        both = self.hold_out & self.only
        if both:
            raise ValueError(f"{_names(both)} cannot be both held out and required")
        views = {Feature.CLOSE_UP, Feature.FULL_VIEW}
        if views <= self.only or views <= self.hold_out:
            raise ValueError("a photo is either a close_up or a full_view")
        if set(_SPECULUMS) <= self.only:
            raise ValueError("a photo has one speculum: metal_speculum or plastic_speculum")
        wants_speculum = bool(self.only & set(_SPECULUMS))
        if wants_speculum and (Feature.CLOSE_UP in self.only or Feature.FULL_VIEW in self.hold_out):
            raise ValueError("speculums are only seen in full views, not in close-ups")

    def decide(self, feature: Feature, drawn: bool) -> bool:
        """The drawn choice, overridden by ``only`` and ``hold_out``."""
        if feature in self.only:
            return True
        return drawn and feature not in self.hold_out


def _names(features: Iterable[Feature]) -> str:
    return ", ".join(sorted(f.value for f in features))


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """The discrete choices of one photo; continuous amounts are drawn while painting."""

    size: tuple[int, int]  # (width, height) of the photo written
    features: frozenset[Feature]

    def has(self, feature: Feature) -> bool:
        """Whether this photo shows ``feature``."""
        return feature in self.features

    @property
    def speculum(self) -> Feature | None:
        """The speculum in view, if any."""
        return next((f for f in _SPECULUMS if f in self.features), None)


def draw_plan(rng: np.random.Generator, size: tuple[int, int] | None, selection: Selection) -> Plan:
    """Draw the features of one photo (and its size, unless ``size`` is given)."""
    u = rng.random(3 + len(_CHANCE))  # always the same count: overrides shift nothing
    on = {f: selection.decide(f, bool(u[3 + i] < p)) for i, (f, p) in enumerate(_CHANCE.items())}
    full = bool(u[0] < _FULL_VIEW_CHANCE)
    if Feature.FULL_VIEW in selection.only or Feature.CLOSE_UP in selection.hold_out:
        full = True
    if Feature.CLOSE_UP in selection.only or Feature.FULL_VIEW in selection.hold_out:
        full = False
    if selection.only & set(_SPECULUMS):
        full = True
    speculum = _speculum(float(u[1]), selection) if full else None
    features = {f for f, value in on.items() if value}
    features.add(Feature.FULL_VIEW if full else Feature.CLOSE_UP)
    if speculum is not None:
        features.add(speculum)
    if size is None:
        sizes = LOW_RESOLUTION_SIZES if on[Feature.LOW_RESOLUTION] else DEFAULT_SIZES
        size = sizes[min(len(sizes) - 1, int(u[2] * len(sizes)))]
    return Plan(size=size, features=frozenset(features))


def _speculum(u: float, selection: Selection) -> Feature | None:
    """Metal, plastic or none; a held-out material gives way to the other one."""
    forced = selection.only & set(_SPECULUMS)
    if forced:
        return next(iter(forced))
    metal, plastic = _SPECULUMS
    if u < _SPECULUM_CHANCES[0]:
        drawn: Feature | None = metal
    elif u < sum(_SPECULUM_CHANCES):
        drawn = plastic
    else:
        return None
    if drawn in selection.hold_out:
        other = plastic if drawn is metal else metal
        return None if other in selection.hold_out else other
    return drawn
