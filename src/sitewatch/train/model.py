"""The siamese change network: a shared pretrained encoder, feature differences, a thin decoder.

FC-Siam-diff in spirit (Caye Daudt et al., 2018), on EfficientNet-Lite0 cut at stride 16:

* both dates go through one encoder (one batch of 2N), so their features are comparable;
* the deepest features of both dates and their absolute difference are joined: *what* is there
  matters (a new roof is change, a greener field is not), not only *how different* it is;
* every finer scale contributes only the absolute difference of its features, which keeps the
  decoder thin and makes it blind to what is equal on both dates;
* the decoder ends at stride 2 and the logit is upsampled bilinearly: full-resolution convolutions
  would cost as much as the encoder, for edges the stride-2 map already places.

The stem and the stride-4 stage stay frozen at their ImageNet weights (edges and colours transfer,
and training them would cost half of each step on a CPU).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional

from sitewatch.change.siamese import STRIDE
from sitewatch.train.encoder import STAGE_END, LiteEncoder

#: Decoder channels at strides 2, 4, 8 and 16.
DECODER_WIDTHS: tuple[int, ...] = (16, 24, 32, 64)
#: The encoder is frozen up to and including the stage of this stride.
FROZEN_STRIDE = 4


def _conv(inputs: int, outputs: int, kernel: int) -> nn.Sequential:
    """Convolution, batch norm, ReLU: the decoder's one building block."""
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    )


class SiameseChange(nn.Module):
    """Change logit ``(N, 1, H, W)`` from normalised BEFORE and AFTER ``(N, 3, H, W)``, H and W
    multiples of :data:`~sitewatch.change.siamese.STRIDE`."""

    def __init__(self, encoder: LiteEncoder, widths: Sequence[int] = DECODER_WIDTHS) -> None:
        """Build the decoder for ENCODER's scales (strides 2 to 16) and freeze its early stages."""
        super().__init__()
        if encoder.strides[-1] != STRIDE or len(widths) != len(encoder.channels):
            raise ValueError(f"encoder strides {encoder.strides} do not match decoder widths {list(widths)}")
        self.encoder = encoder
        channels = encoder.channels
        self.top = nn.Sequential(_conv(3 * channels[-1], widths[-1], 1), _conv(widths[-1], widths[-1], 3))
        self.skips = nn.ModuleList(_conv(c, w, 1) for c, w in zip(channels[:-1], widths[:-1], strict=True))
        self.fuse = nn.ModuleList(_conv(widths[i + 1] + widths[i], widths[i], 3) for i in range(len(widths) - 1))
        self.head = nn.Conv2d(widths[0], 1, 1)
        assert self.head.bias is not None
        nn.init.constant_(self.head.bias, -2.0)  # start near the prior: most pixels do not change
        for parameter in self._frozen_parameters():
            parameter.requires_grad_(False)

    def _frozen_modules(self) -> list[nn.Module]:
        """The stem and every block up to the stride-:data:`FROZEN_STRIDE` stage."""
        return [self.encoder.stem, *self.encoder.blocks[: STAGE_END[FROZEN_STRIDE] + 1]]

    def _frozen_parameters(self) -> Iterator[nn.Parameter]:
        for module in self._frozen_modules():
            yield from module.parameters()

    def train(self, mode: bool = True) -> SiameseChange:
        """As :meth:`nn.Module.train`, but the frozen stages keep their ImageNet batch statistics."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """The change logit at the input's resolution."""
        n = before.shape[0]
        features = self.encoder(torch.cat([before, after]))
        a, b = [f[:n] for f in features], [f[n:] for f in features]
        x = self.top(torch.cat([a[-1], b[-1], torch.abs(a[-1] - b[-1])], dim=1))
        for i in reversed(range(len(self.skips))):
            x = functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = self.fuse[i](torch.cat([x, self.skips[i](torch.abs(a[i] - b[i]))], dim=1))
        logit: torch.Tensor = functional.interpolate(
            self.head(x), scale_factor=2.0, mode="bilinear", align_corners=False
        )
        return logit


def build(pretrained: bool = True) -> SiameseChange:
    """The network with the ImageNet encoder (PRETRAINED) or a randomly initialised one (tests)."""
    from sitewatch.train.encoder import pretrained_encoder

    if pretrained:
        encoder = pretrained_encoder(max_stride=STRIDE)
    else:
        from efficientnet_lite_pytorch import EfficientNet

        encoder = LiteEncoder(EfficientNet.from_name("efficientnet-lite0"), max_stride=STRIDE)
    return SiameseChange(encoder)
