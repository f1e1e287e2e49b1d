"""Training and export of sitewatch's models (the ``train`` extra: needs PyTorch).

The default install never imports this package: it runs what these modules export, as ONNX.
"""
