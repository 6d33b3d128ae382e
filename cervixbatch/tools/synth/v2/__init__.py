"""Synth v2: synthetic colposcopy photos that look like the clinic's, with exact masks.

Close-ups and full views (circular vignette, walls with rugae, metal or clear plastic
speculums); mucosa with vessels, uneven pink-violet shading and wet sheen; low-contrast
textured acetowhite lesions; hard negatives (glare clusters on mucus, blood, ectropion,
Nabothian cysts, the transformation zone's colour change); colour casts, green filter,
blur, JPEG and low resolution. Each is a named ``Feature`` a caller can hold out or ask
for in every photo. The first generation stays in ``cervixbatch.tools.synth.v1``.
"""

from cervixbatch.tools.synth.v2.compose import make_sample
from cervixbatch.tools.synth.v2.plan import (
    DEFAULT_SIZES,
    LOW_RESOLUTION_SIZES,
    Feature,
    Selection,
    parse_features,
)

__all__ = [
    "DEFAULT_SIZES",
    "LOW_RESOLUTION_SIZES",
    "Feature",
    "Selection",
    "make_sample",
    "parse_features",
]
