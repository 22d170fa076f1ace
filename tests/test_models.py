"""Model zoo: parameter counts against the standard figures, shapes, names, registry errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from corranalysis.errors import InputError
from corranalysis.models import (
    MODELS,
    available,
    count_parameters,
    create,
    model_name,
    resolve_model,
)


def small_factory(in_channels: int, num_classes: int) -> nn.Module:
    """A user model for the ``module:factory`` tests."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


def sized_factory(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes))


def no_arg_factory() -> nn.Module:
    return nn.Linear(4, 2)


def not_a_model(in_channels: int, num_classes: int) -> int:
    return 3


# exact counts; the CIFAR figures are the standard ones for these architectures
COUNTS = {
    # (name, in_channels, num_classes, image_size): parameters
    ("resnet18", 3, 10, 32): 11_173_962,
    ("resnet50", 3, 10, 32): 23_520_842,
    # ResNet-20 (He et al. 2016): 269,722 with option-A shortcuts + two 1×1 shortcut convs
    # with BatchNorm (16·32 + 2·32 + 32·64 + 2·64 = 2,752)
    ("resnet20", 3, 10, 32): 269_722 + 2_752,
    ("lenet5", 1, 10, 28): 61_706,
    ("lenet5", 3, 10, 32): 62_006,
    # VGG-16-BN conv stack (14,723,136) + head 512·4096+4096 + 4096·4096+4096 + 4096·10+10
    ("vgg16", 3, 10, 32): 14_723_136 + 2_101_248 + 16_781_312 + 40_970,
    # cnn4: convs (9C+1)·32 + 9248 + 18496 + 36928, linear (64·(S/4)²+1)·classes
    ("cnn4", 1, 10, 28): (9 + 1) * 32 + 9248 + 18496 + 36928 + (64 * 49 + 1) * 10,
    ("cnn4", 3, 100, 32): (27 + 1) * 32 + 9248 + 18496 + 36928 + (64 * 64 + 1) * 100,
    # fc2: (C·S²+1)·1024 + (1024+1)·classes
    ("fc2", 1, 10, 28): (784 + 1) * 1024 + 1025 * 10,
    ("fc2", 3, 10, 32): (3072 + 1) * 1024 + 1025 * 10,
}


@pytest.mark.parametrize("key", list(COUNTS), ids=lambda k: "-".join(map(str, k)))
def test_parameter_counts(key):
    name, c, k, s = key
    assert count_parameters(create(name, c, k, image_size=s)) == COUNTS[key]


def test_resnet_counts_follow_classes_and_channels():
    # only the stem conv and the fc change
    assert count_parameters(create("resnet18", 1, 10)) == 11_173_962 - 2 * 64 * 9
    assert count_parameters(create("resnet18", 3, 100)) == 11_173_962 + 90 * 513
    assert count_parameters(create("resnet50", 3, 100)) == 23_520_842 + 90 * 2049


def test_vgg16_large_linear_layers():
    m = create("vgg16", 3, 10)
    assert m.classifier[3].weight.numel() == 4096 * 4096
    assert m.classifier[0].in_features == 512


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_forward_shapes(name, shape):
    torch.manual_seed(0)
    c, s, _ = shape
    model = create(name, c, 10, image_size=s).eval()
    with torch.no_grad():
        y = model(torch.randn(2, *shape))
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()


def test_stable_module_names():
    def names(model):
        return {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}

    assert names(create("cnn4", 1, 10)) == {
        "features.0", "features.3", "features.5", "features.8", "classifier.2"}
    assert names(create("fc2", 1, 10)) == {"classifier.1", "classifier.3"}
    assert names(create("lenet5", 1, 10)) == {
        "features.0", "features.3", "classifier.1", "classifier.3", "classifier.5"}
    r18 = names(create("resnet18", 3, 10))
    assert {"conv1", "layer1.0.conv1", "layer2.0.downsample.0", "layer4.1.conv2", "fc"} <= r18
    assert len(r18) == 21  # 20 convs (17 + 3 downsample) + fc
    r20 = names(create("resnet20", 1, 10))
    assert len(r20) == 22  # 19 convs + 2 downsample + fc
    assert {"conv1", "layer1.2.conv2", "layer2.0.downsample.0", "layer3.2.conv2", "fc"} <= r20
    r50 = names(create("resnet50", 3, 10))
    assert {"layer1.0.downsample.0", "layer3.5.conv3", "fc"} <= r50
    vgg = names(create("vgg16", 3, 10))
    assert {"features.0", "features.40", "classifier.0", "classifier.3", "classifier.6"} == (
        vgg & {"features.0", "features.40", "classifier.0", "classifier.3", "classifier.6"})
    assert len(vgg) == 16


def test_cnn4_convs_have_bias_and_no_norm():
    m = create("cnn4", 1, 10)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 4 and all(c.bias is not None and c.kernel_size == (3, 3) for c in convs)
    assert not any(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in m.modules())


def test_registry_and_unknown_name():
    assert available() == sorted(MODELS)
    assert create("CNN4", 1, 10) is not None  # case-insensitive
    with pytest.raises(InputError, match="unknown; valid: cnn4, fc2, lenet5, resnet18"):
        create("resnet19", 3, 10)
    with pytest.raises(InputError, match="num_classes"):
        create("cnn4", 1, 0)


def test_resolve_module_factory(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    m = resolve_model("test_models:small_factory", 1, 7)
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    m = resolve_model("test_models:sized_factory", 3, 5, image_size=32)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert isinstance(resolve_model("test_models:no_arg_factory", 1, 10), nn.Linear)
    assert resolve_model("cnn4", 1, 10).classifier[2].out_features == 10
    own = nn.Linear(2, 2)
    assert resolve_model(own, 1, 10) is own
    assert model_name(own) == "torch.nn.modules.linear.Linear"
    assert model_name("test_models:small_factory") == "test_models:small_factory"


@pytest.mark.parametrize("spec, match", [
    ("no_such_module_xyz:f", "cannot import module"),
    ("test_models:missing", "has no attribute"),
    ("test_models:not_a_model", "expected a torch.nn.Module"),
    ("test_models:", "package.module:factory"),
    ("vgg17", "unknown; valid"),
])
def test_resolve_errors(monkeypatch, spec, match):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    with pytest.raises(InputError, match=match):
        resolve_model(spec, 1, 10)
