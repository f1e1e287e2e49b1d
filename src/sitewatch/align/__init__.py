"""Co-registration: how one image of a site is misregistered against another, and undoing it.

:func:`register` measures (arrays in, a :class:`Registration` out); :func:`apply` resamples MOVING
onto REFERENCE's grid through it in one resampling. The convention is DESIGN.md's ``register``
contract: a feature at REFERENCE pixel (x, y) appears in MOVING at (x + dx, y + dy).
"""

from sitewatch.align.apply import apply
from sitewatch.align.fit import FieldGrid
from sitewatch.align.geo import georef_map, shift_metres
from sitewatch.align.register import Registration, TiePoints, register

__all__ = ["FieldGrid", "Registration", "TiePoints", "apply", "georef_map", "register", "shift_metres"]
