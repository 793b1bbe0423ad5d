"""The layer rules model declarations share (values of ``@recommended_binarization``).

Binary networks keep the layer that sees the image and the classifier full precision:
binarizing them costs the most accuracy for the least saving (Rastegari et al.,
XNOR-Net, 2016; Liu et al., Bi-Real Net, 2018). Bi-Real Net also keeps the 1x1
convolutions of its downsampling shortcuts real-valued. Plain data, no imports, so
torch-free modules can use it.
"""

from __future__ import annotations

from typing import Any

#: ``custom_config_layers_name`` keeping the first and last binarizable layers float.
FIRST_AND_LAST_FLOAT: dict[str, dict[str, Any]] = {"_first_": {}, "_last_": {}}

#: ``ignore_layers_name`` keeping every downsampling shortcut (modules named
#: ``downsample``, as in torchvision's ResNets) float.
DOWNSAMPLE_FLOAT: list[str] = ["$downsample$"]
