"""sitewatch: watch named sites in satellite and aerial imagery and say what changed, and when."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
