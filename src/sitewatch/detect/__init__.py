"""Objects in observations: vehicles and containers (:mod:`~sitewatch.detect.base`, ``sliced``,
``model``, ``vehicles``), search by description (``find``, ``colour``), watch rules (``rules``), and
the stage that counts objects per observation (``inventory``).

Import the submodules themselves: this package imports nothing, so ``sitewatch detect`` does not
pay for the colour search's dependencies, nor the search for ONNX Runtime.
"""
