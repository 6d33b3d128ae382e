"""The configuration: ``config.toml``'s sections as typed, checked, frozen objects.

Import every public name from here (``from cervixbatch.config import Config``); the
modules inside are the sections (``settings``, ``dicom``), their closed sets of values
(``types``), the checks (``checks``) and the address parsers (``addresses``).
"""

from cervixbatch.config.settings import *  # noqa: F403 - the package's one import path
from cervixbatch.config.settings import __all__ as __all__
