"""Small networks shared by the runtime's tests and the ``.bnnpack`` fuzzer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Everything(nn.Module):
    """Every float operation of the runtime, and a grouped strided binary convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=2, dilation=2, bias=True)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.grouped = nn.Conv2d(8, 8, 1, groups=2)
        self.binary = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, bias=True)
        self.norm = nn.BatchNorm2d(8)
        self.prelu = nn.PReLU()
        self.pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.average = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)
        self.adaptive = nn.AdaptiveAvgPool2d((3, 2))
        self.leaky = nn.LeakyReLU(0.1)
        self.fc = nn.Linear(8 * 6 + 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.prelu(self.norm(self.depthwise(x)))
        x = F.relu(self.grouped(x)) - 0.25
        wide = torch.cat([x, x * 0.5], dim=1)
        y = self.binary(self.pool(x) + 1.0) / 2
        y = F.pad(y[:, :, ::2, ::1], (1, 1, 0, 2, 0, 0), value=0.5)
        a = self.adaptive(self.leaky(y)).flatten(1)
        b = F.avg_pool2d(self.average(wide), 2, divisor_override=3).mean((2, 3))
        z = torch.cat([a.view(a.size(0), -1), b], dim=1)
        return F.softmax(self.fc(F.hardtanh(z, -0.5, 2.0)), dim=1)
