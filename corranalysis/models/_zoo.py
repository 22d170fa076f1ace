"""Model zoo: the convolutional and fully connected models the study trains and truncates.

Every model takes images ``x`` of shape ``[B, C, H, W]`` (float32, normalised) and
returns logits ``[B, num_classes]``. Module names are stable and readable
(``features.0``, ``classifier.0``, ``layer1.0.conv1``, ``fc``) so layer names in
spectra, sweeps and checkpoints stay the same across versions.

Registry names (see :data:`MODELS`):

``cnn4``      vanilla four-layer CNN (see :class:`CNN4`)
``fc2``       two fully connected layers (see :class:`FC2`)
``lenet5``    classic LeNet-5 (see :class:`LeNet5`)
``resnet18``  CIFAR-style ResNet-18 (BasicBlock)
``resnet50``  CIFAR-style ResNet-50 (Bottleneck, expansion 4)
``vgg16``     CIFAR-style VGG-16 with BatchNorm and the ADTN 4096-4096 head

Users' own models: :func:`resolve_model` also accepts ``package.module:factory``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.spec import import_object
from ..errors import InputError

__all__ = [
    "CNN4", "FC2", "LeNet5", "ResNet", "BasicBlock", "Bottleneck", "VGG16", "MODELS",
    "available", "create", "resolve_model", "default_image_size", "count_parameters",
]


def default_image_size(in_channels: int) -> int:
    """Image side assumed when none is given: 28 for 1 channel (MNIST-like), else 32 (CIFAR)."""
    return 28 if in_channels == 1 else 32


def _he_init(model: nn.Module) -> None:
    """He (Kaiming-normal, fan-in, ReLU) weights and zero biases for every convolution."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------- small models


class CNN4(nn.Module):
    """The vanilla four-layer CNN.

    ``features``: ``0`` Conv2d(C, 32, 3, padding=1) · ``1`` ReLU · ``2`` MaxPool2d(2) · ``3``
    Conv2d(32, 32, 3, padding=1) · ``4`` ReLU · ``5`` Conv2d(32, 64, 3, padding=1) · ``6`` ReLU ·
    ``7`` MaxPool2d(2) · ``8`` Conv2d(64, 64, 3, padding=1) · ``9`` ReLU; ``classifier``: ``0``
    Flatten · ``1`` Dropout(0.25) · ``2`` Linear(64·(S/4)², num_classes),
    S = ``image_size`` (floor division by 4).

    Convolutions are plain ``nn.Conv2d`` with bias (no normalisation layers), so each kernel
    is exactly the learned linear map; they start from He-normal weights (plain SGD does not
    get going from PyTorch's default init without normalisation layers). Parameters: convs
    ``(9C+1)·32 + 9248 + 18496 + 36928`` plus linear ``(64·(S/4)² + 1)·num_classes``; 96,362
    for 1×28×28 and 10 classes. The first pool comes early so that a CPU epoch of Fashion-MNIST
    stays cheap: ~7.4 M multiply-adds per image forward.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 dropout: float = 0.25) -> None:
        super().__init__()
        side = image_size // 4
        if side < 1:
            raise InputError(f"cnn4: image_size {image_size} is too small; need at least 4")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(64 * side * side, num_classes),
        )
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class FC2(nn.Module):
    """Two fully connected layers.

    ``classifier``: ``0`` Flatten · ``1`` Linear(C·S·S, ``hidden``=1024) · ``2`` ReLU ·
    ``3`` Linear(1024, num_classes). Parameters: ``(C·S² + 1)·1024 + (1024 + 1)·num_classes``;
    814,090 for 1×28×28 and 10 classes.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 hidden: int = 1024) -> None:
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * image_size * image_size, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)


def _pad_to(x: torch.Tensor, side: int) -> torch.Tensor:
    """Zero-pad ``x`` [B, C, H, W] symmetrically so H, W ≥ ``side`` (28 → 32 pads 2 each side)."""
    h, w = x.shape[-2:]
    if h >= side and w >= side:
        return x
    ph, pw = max(side - h, 0), max(side - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class LeNet5(nn.Module):
    """Classic LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling.

    Inputs smaller than 32×32 are zero-padded to 32×32 (28×28 by 2 each side, as in the
    original). ``features``: ``0`` Conv2d(C, 6, 5) · ``1`` ReLU · ``2`` MaxPool2d(2) · ``3``
    Conv2d(6, 16, 5) · ``4`` ReLU · ``5`` MaxPool2d(2); then AdaptiveAvgPool2d(5) (identity
    at 32×32); ``classifier``: ``0`` Flatten · ``1`` Linear(400, 120) · ``2`` ReLU · ``3``
    Linear(120, 84) · ``4`` ReLU · ``5`` Linear(84, num_classes). 61,706 parameters for
    1 channel and 10 classes. Convolutions start from He-normal weights.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(5)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )
        _he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(_pad_to(x, 32))))


# ----------------------------------------------------------------------------- ResNet


def _downsample(in_planes: int, out_planes: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and an identity (or 1×1 ``downsample``) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carrying the stride), 1×1 expand ×4, with BatchNorm; 1×1 shortcut."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3×3 stride-1 stem ``conv1``/``bn1`` (no max-pool), stages
    ``layer1``, ``layer2``, … of ``widths`` planes (strides 1, 2, 2, …), global average
    pool ``avgpool`` and linear ``fc``. Works for any input side ≥ 8 (28 and 32 included).
    Shortcuts that change shape are 1×1 convolutions with BatchNorm (He et al.'s option B).

    ResNet-18 = BasicBlock × (2, 2, 2, 2), widths 64…512: 11,173,962 parameters for 3
    channels, 10 classes. ResNet-50 = Bottleneck × (3, 4, 6, 3): 23,520,842. ResNet-20 (He et
    al. 2016, CIFAR) = BasicBlock × (3, 3, 3), widths 16, 32, 64: 272,474 parameters for 3
    channels and 10 classes (269,722 with the parameter-free option-A shortcuts, + 2,752 for
    the two 1×1 shortcut convolutions and their BatchNorms), 272,186 for 1 channel.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], num_blocks: list[int],
                 in_channels: int = 3, num_classes: int = 10,
                 widths: tuple[int, ...] = (64, 128, 256, 512)) -> None:
        super().__init__()
        if len(widths) != len(num_blocks):
            raise InputError(f"resnet: {len(num_blocks)} stages need {len(num_blocks)} widths, "
                             f"got {widths}")
        self.in_planes = widths[0]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.stages = [f"layer{i + 1}" for i in range(len(widths))]
        for i, (width, n) in enumerate(zip(widths, num_blocks, strict=True)):
            setattr(self, self.stages[i], self._stage(block, width, n, 1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, block, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ----------------------------------------------------------------------------- VGG

VGG16_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                              512, 512, 512, "M", 512, 512, 512, "M"]


class VGG16(nn.Module):
    """CIFAR-style VGG-16 with BatchNorm and the large ADTN head (Qing et al. 2305.06058).

    ``features``: for each entry of :data:`VGG16_CFG`, Conv2d(3×3, padding 1) · BatchNorm2d ·
    ReLU, or MaxPool2d(2) for ``M`` (indices ``features.0`` = first conv, ``features.3`` =
    second conv, ...). Inputs smaller than 32×32 are zero-padded to 32×32 (28 → 32) so all
    five pools are defined; ``avgpool`` = AdaptiveAvgPool2d(s) with s = ``head_pool`` (1).
    ``classifier``: ``0`` Linear(512·s², 4096) · ``1`` ReLU · ``2`` Dropout · ``3``
    Linear(4096, 4096) · ``4`` ReLU · ``5`` Dropout · ``6`` Linear(4096, num_classes).
    ``classifier.3`` holds 16.8 M parameters (``classifier.0`` 2.1 M at s = 1, 8.4 M at s = 2).
    33,646,666 parameters for 3 channels, 10 classes, s = 1.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, head_pool: int = 1,
                 dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.BatchNorm2d(int(v)),
                           nn.ReLU(inplace=True)]
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(head_pool)
        self.classifier = nn.Sequential(
            nn.Linear(512 * head_pool * head_pool, 4096), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(_pad_to(x, 32)))
        return self.classifier(torch.flatten(x, 1))


# ----------------------------------------------------------------------------- registry


def _cnn4(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return CNN4(in_channels, num_classes, image_size)


def _fc2(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return FC2(in_channels, num_classes, image_size)


def _lenet5(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return LeNet5(in_channels, num_classes)


def _resnet18(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return ResNet(BasicBlock, [2, 2, 2, 2], in_channels, num_classes)


def _resnet20(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return ResNet(BasicBlock, [3, 3, 3], in_channels, num_classes, widths=(16, 32, 64))


def _resnet50(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return ResNet(Bottleneck, [3, 4, 6, 3], in_channels, num_classes)


def _vgg16(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return VGG16(in_channels, num_classes)


#: Registry: name → factory(in_channels, num_classes, image_size) returning an ``nn.Module``.
MODELS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "cnn4": _cnn4,
    "fc2": _fc2,
    "lenet5": _lenet5,
    "resnet18": _resnet18,
    "resnet20": _resnet20,
    "resnet50": _resnet50,
    "vgg16": _vgg16,
}


def available() -> list[str]:
    """Names of the built-in models."""
    return sorted(MODELS)


def _check_sizes(in_channels: int, num_classes: int, image_size: int) -> None:
    for label, value, low in (("in_channels", in_channels, 1), ("num_classes", num_classes, 1),
                              ("image_size", image_size, 4)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InputError(f"{label} {value!r} is invalid; expected an integer ≥ {low}")


def create(name: str, in_channels: int, num_classes: int, *,
           image_size: int | None = None) -> nn.Module:
    """Build the registry model ``name`` for ``in_channels`` × ``image_size``² inputs.

    ``image_size`` (side in pixels) matters only for ``cnn4`` and ``fc2``, whose linear layers
    are sized from it; it defaults to :func:`default_image_size` (28 for 1 channel, else 32).
    Unknown names raise :class:`InputError` listing the valid ones.
    """
    key = str(name).lower()
    if key not in MODELS:
        raise InputError(
            f"model {name!r} is unknown; valid: {', '.join(available())} "
            "(or 'package.module:factory' for your own model)"
        )
    size = default_image_size(in_channels) if image_size is None else image_size
    _check_sizes(in_channels, num_classes, size)
    return MODELS[key](in_channels, num_classes, size)


def _call_factory(spec: str, factory: Callable, in_channels: int, num_classes: int,
                  image_size: int | None) -> nn.Module:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, int] = {}
    if takes_kwargs or ("in_channels" in params and "num_classes" in params):
        kwargs = {"in_channels": in_channels, "num_classes": num_classes}
        if image_size is not None and (takes_kwargs or "image_size" in params):
            kwargs["image_size"] = image_size
    elif any(p.default is inspect.Parameter.empty
             and p.kind not in (inspect.Parameter.VAR_POSITIONAL,)
             for p in params.values()):
        raise InputError(
            f"model factory {spec!r} must accept in_channels= and num_classes= keywords "
            "(or take no required arguments)"
        )
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise InputError(
            f"model factory {spec!r} returned {type(model).__name__}, expected a torch.nn.Module"
        )
    return model


def resolve_model(spec: str | nn.Module, in_channels: int, num_classes: int, *,
                  image_size: int | None = None) -> nn.Module:
    """A model from a registry name, ``package.module:factory``, or an ``nn.Module`` as is.

    A factory's module is found on ``sys.path`` or in the current folder, as a data set
    factory's (:func:`corranalysis.data.spec.import_object`). It is called as
    ``factory(in_channels=..., num_classes=...)`` (plus ``image_size=`` if it accepts it), or
    ``factory()`` if it takes no arguments.
    """
    if isinstance(spec, nn.Module):
        return spec
    spec = str(spec)
    if ":" not in spec:
        return create(spec, in_channels, num_classes, image_size=image_size)
    factory = import_object(spec, f"model {spec!r}", "a torch.nn.Module")
    return _call_factory(spec, factory, in_channels, num_classes, image_size)


def model_name(spec: str | nn.Module) -> str:
    """The name recorded for a model spec: registry name, ``module:factory`` or class path."""
    if isinstance(spec, nn.Module):
        cls = type(spec)
        return f"{cls.__module__}.{cls.__qualname__}"
    spec = str(spec)
    return spec if ":" in spec else spec.lower()
