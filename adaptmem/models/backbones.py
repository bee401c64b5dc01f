"""Image feature extractors used by the few-shot learners: Conv-4 and ResNet-12."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from adaptmem.utils.checks import check_float, check_positive_int, fmt_shape


class Conv4(nn.Module):
    r"""Four ``[Conv3x3 -> BatchNorm -> MaxPool2 -> Dropout -> ReLU]`` blocks, flattened.

    The SRWM paper's vision stem: 64 channels on Omniglot 28x28 (64-d features), 32 channels
    on Mini-ImageNet 84x84 (800-d) and on FC100 32x32 (128-d).

    Args:
        in_channels: 1 (Omniglot) or 3 (RGB).
        channels: width of every block.
        dropout: dropout probability inside each block ("vision dropout").

    Inputs: **x** ``[N, in_channels, H, W]``. Outputs: ``[N, out_features(H)]``.

    Example::

        >>> net = Conv4(1, 64)
        >>> net(torch.rand(10, 1, 28, 28)).shape, net.out_features(28)
        (torch.Size([10, 64]), 64)
    """

    def __init__(self, in_channels: int = 1, channels: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        check_positive_int("Conv4", "in_channels", in_channels)
        check_positive_int("Conv4", "channels", channels)
        check_float("Conv4", "dropout", dropout, lo=0.0, hi=1.0)
        self.in_channels, self.channels = in_channels, channels
        blocks = []
        for i in range(4):
            blocks += [
                nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1),
                nn.BatchNorm2d(channels),
                nn.MaxPool2d(2),
                nn.Dropout(dropout),
                nn.ReLU(inplace=True),
            ]
        self.net = nn.Sequential(*blocks, nn.Flatten())

    def out_features(self, image_size: int) -> int:
        s = image_size
        for _ in range(4):
            s //= 2
        if s < 1:
            raise ValueError(f"Conv4: image_size must be >= 16 for four 2x poolings, got {image_size}")
        return self.channels * s * s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv4: x must be [N, {self.in_channels}, H, W], got "
                f"{fmt_shape(x) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        return self.net(x)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float) -> None:
        super().__init__()

        def conv_bn(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b)]

        act = nn.LeakyReLU(0.1)
        self.body = nn.Sequential(*conv_bn(cin, cout), act, *conv_bn(cout, cout), act, *conv_bn(cout, cout))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.out = nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(2), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x) + self.skip(x))


class ResNet12(nn.Module):
    r"""ResNet-12: four residual blocks of three 3x3 convolutions, widths ``[64, 96, 128, 256]``.

    Each block: ``LeakyReLU(conv-bn-act-conv-bn-act-conv-bn(x) + bn(conv1x1(x)))``, 2x max-pool,
    dropout; global average pooling gives ``channels[-1]``-d features.

    Inputs: **x** ``[N, in_channels, H, W]`` (H, W >= 16). Outputs: ``[N, channels[-1]]``.

    Example::

        >>> ResNet12(3)(torch.rand(2, 3, 84, 84)).shape
        torch.Size([2, 256])
    """

    def __init__(
        self, in_channels: int = 3, channels: Sequence[int] = (64, 96, 128, 256), dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_positive_int("ResNet12", "in_channels", in_channels)
        if (
            isinstance(channels, (str, bytes))
            or not isinstance(channels, Sequence)
            or len(channels) != 4
            or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels)
        ):
            raise ValueError(f"ResNet12: channels must list 4 positive int widths, got {channels!r}")
        check_float("ResNet12", "dropout", dropout, lo=0.0, hi=1.0)
        self.in_channels, self.channels = in_channels, tuple(channels)
        widths = (in_channels, *channels)
        self.blocks = nn.Sequential(*(_ResBlock(widths[i], widths[i + 1], dropout) for i in range(4)))

    def out_features(self, image_size: int) -> int:
        return self.channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ResNet12: x must be [N, {self.in_channels}, H, W], got "
                f"{fmt_shape(x) if isinstance(x, torch.Tensor) else type(x).__name__}"
            )
        return self.blocks(x).mean(dim=(-2, -1))
