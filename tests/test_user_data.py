"""Data as users have it: image folders, .npz files, factories, torch Datasets and DataLoaders,
each loaded into what the built-in data sets give, checked, and usable by every stage."""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from corranalysis import InputError
from corranalysis.config import parse_config
from corranalysis.data import (
    DATASETS,
    BatchLoader,
    ImageDataset,
    as_loaders,
    dataset_checksum,
    get_info,
    load_dataset,
    locate,
    make_loaders,
    parse_spec,
    resolve_name,
)
from corranalysis.models import resolve_model
from corranalysis.runtime import evaluate, load_trained, train

SHAPES = ("hbar", "square", "vbar")  # sorted: the labels are 0, 1, 2


def _shape(kind: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A grey ``size``² image of a bright square or bar at a random place, with noise."""
    img = rng.integers(0, 40, (size, size)).astype(np.uint8)
    h, w = {"square": (7, 7), "hbar": (3, 12), "vbar": (12, 3)}[kind]
    top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    img[top:top + h, left:left + w] = rng.integers(200, 256)
    return img


def make_shapes(root: Path, per_class: int = 100, seed: int = 0, mode: str = "L",
                ext: str = ".png") -> Path:
    """``root/<shape>/NNN.png``: ``per_class`` generated images of each of three shapes."""
    rng = np.random.default_rng(seed)
    for kind in SHAPES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(_shape(kind, rng)).convert(mode).save(root / kind / f"{i:03d}{ext}")
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"))


def _arrays(n_train=30, n_test=12, classes=3, size=8, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (n_train, size, size, channels), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, size, size, channels), dtype=np.uint8)
    y_train = np.arange(n_train) % classes
    y_test = np.arange(n_test) % classes
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_factory(folder: Path, body: str, monkeypatch) -> str:
    """A module of a unique name holding ``body`` in ``folder``, put on sys.path; its name."""
    name = f"userdata_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(folder))
    return name


FACTORY = """
    import torch
    from torch.utils.data import Dataset, TensorDataset

    class Noisy(Dataset):
        '''Training items with a random flip: a fresh draw each time an item is read.'''
        def __init__(self, x, y):
            self.x, self.y = x, y
        def __len__(self):
            return len(self.y)
        def __getitem__(self, i):
            x = self.x[i].flip(-1) if torch.rand(()) < 0.5 else self.x[i]
            return x, int(self.y[i])

    def make():
        g = torch.Generator().manual_seed(0)
        x = torch.rand(40, 1, 8, 8, generator=g)
        y = torch.arange(40) % 4
        return Noisy(x[:30], y[:30]), TensorDataset(x[30:], y[30:])
"""


# ------------------------------------------------------------------ specs
def test_specs_are_told_apart_by_their_syntax_and_the_built_ins_stay_as_they_were(tmp_path):
    assert parse_spec("imagefolder:data/shapes").kind == "imagefolder"
    assert parse_spec("IMAGEFOLDER: data/shapes").text == "imagefolder:data/shapes"
    assert parse_spec("arrays/cifar.npz").kind == "npz"
    assert parse_spec("my_pkg.data:make_sets").kind == "factory"
    assert parse_spec("Fashion_MNIST").kind == "builtin"
    with pytest.raises(InputError, match="not a valid spec; expected a built-in name"):
        parse_spec("my-pkg:make sets")
    with pytest.raises(InputError, match="give the folder after 'imagefolder:'"):
        parse_spec("imagefolder:")
    assert "imagefolder:anything" in DATASETS and "x.npz" in DATASETS and "m.n:f" in DATASETS
    assert "imagenet" not in DATASETS and DATASETS.get("imagenet") is None
    assert list(DATASETS) == ["fashion-mnist", "mnist", "cifar10", "cifar100"]
    assert resolve_name("cifar-10") == "cifar10"
    with pytest.raises(InputError, match=r"'imagenet' is unknown; valid: fashion-mnist, mnist, "
                                         r"cifar10, cifar100, or your own: 'imagefolder:PATH'"):
        resolve_name("imagenet")
    with pytest.raises(InputError, match="folder 'nowhere' does not exist"):
        resolve_name("imagefolder:nowhere")
    with pytest.raises(InputError, match="file 'none.npz' does not exist"):
        resolve_name("none.npz")
    with pytest.raises(InputError, match="module 'no_such_module_xyz' cannot be found"):
        resolve_name("no_such_module_xyz:make")
    assert locate(f"imagefolder:{tmp_path}") == tmp_path


def test_a_study_config_takes_specs_and_names_what_is_missing(shapes):
    base = {"name": "mine", "model": "cnn4"}
    spec = f"imagefolder:{shapes}"
    assert parse_config({**base, "dataset": spec}).dataset == spec
    assert parse_config({**base, "dataset": "Fashion_MNIST"}).dataset == "fashion-mnist"
    with pytest.raises(InputError, match=r"dataset: .*folder '/no/such/folder' does not exist"):
        parse_config({**base, "dataset": "imagefolder:/no/such/folder"})
    with pytest.raises(InputError, match=r"dataset: .*unknown data set; valid: fashion-mnist.*"
                                         r"imagefolder:PATH, PATH\.npz, package\.module:factory"):
        parse_config({**base, "dataset": "imagenet"})


# ------------------------------------------------------------------ image folders
def test_an_image_folder_is_split_by_class_with_a_fixed_seed_and_normalised_by_its_training_images(
        shapes):
    spec = f"imagefolder:{shapes}"
    train, test, info = make_loaders(spec, batch_size=64, eval_batch_size=50)
    assert (info.in_channels, info.image_size, info.num_classes) == (1, 16, 3)
    assert info.classes == SHAPES and info.format == "imagefolder" and info.name == spec
    assert (info.train_count, info.test_count) == (240, 60)
    assert isinstance(train, BatchLoader) and isinstance(test, BatchLoader)
    tr, te = train.dataset, test.dataset
    assert tr.images.dtype == torch.uint8 and tr.images.shape == (240, 1, 16, 16)
    assert torch.bincount(te.labels).tolist() == [20, 20, 20]  # 20 % of each class
    pixels = tr.images.double() / 255
    assert info.mean[0] == pytest.approx(pixels.mean().item(), abs=1e-9)
    assert info.std[0] == pytest.approx(pixels.std(unbiased=False).item(), abs=1e-9)
    x = torch.cat([b for b, _ in train])
    assert abs(x.mean().item()) < 1e-3 and x.std().item() == pytest.approx(1, abs=1e-3)
    # every image is one file, whole: image 0 of the test split is a file of its class
    first = Image.open(te.files[len(tr)])
    assert np.array_equal(np.asarray(first), te.images[0, 0].numpy())
    assert te.files[len(tr)].parent.name == SHAPES[int(te.labels[0])]
    again = load_dataset(spec, "test")
    assert torch.equal(again.images, te.images) and len(dataset_checksum(spec)) == 64
    assert dataset_checksum(spec) == te.checksum == tr.checksum
    assert DATASETS[spec] is info and get_info(spec) is info


def test_a_given_split_is_kept_and_labels_follow_the_training_folders(tmp_path):
    make_shapes(tmp_path / "train", per_class=6)
    make_shapes(tmp_path / "test", per_class=2, seed=1)
    for f in (tmp_path / "test" / "hbar").iterdir():
        f.unlink()
    (tmp_path / "test" / "hbar").rmdir()  # the held-out split lacks a class: allowed
    (tmp_path / "train" / "square" / ".DS_Store").write_bytes(b"junk")  # hidden: skipped
    train = load_dataset(f"imagefolder:{tmp_path}", "train")
    test = load_dataset(f"imagefolder:{tmp_path}", "test")
    assert len(train) == 18 and len(test) == 4
    assert torch.bincount(test.labels, minlength=3).tolist() == [0, 2, 2]  # square 1, vbar 2
    assert all(f.parts[-3] == "test" for f in test.files[18:])


def test_colour_jpegs_give_three_channels_and_mixed_modes_go_to_the_majority(tmp_path):
    make_shapes(tmp_path / "rgb", per_class=5, mode="RGB", ext=".jpg")
    info = get_info(f"imagefolder:{tmp_path / 'rgb'}")
    assert info.in_channels == 3 and len(info.mean) == 3 and info.num_classes == 3
    mixed = make_shapes(tmp_path / "mixed", per_class=5, mode="L")
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(mixed / "square" / "rgb.png")
    with pytest.warns(UserWarning, match=r"15 grey and 1 colour images; converted all to "
                                         r"grey \(e\.g\. .*rgb\.png"):
        ds = load_dataset(f"imagefolder:{mixed}", "train")
    assert ds.images.shape[1] == 1


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.mark.parametrize("damage, message", [
    ("missing", r"folder '.*data' does not exist; give a folder with one sub-folder"),
    ("no classes", r"has no sub-folders; give a folder with one sub-folder of PNG/JPEG"),
    ("empty class", r"class folder '.*vbar' holds no PNG/JPEG images \(only notes\.txt\); "
                    r"every class needs at least one image"),
    ("other size", r"images must all have one size; most are 16×16 but '.*odd\.png' is "
                   r"20×16; resize them to one size"),
    ("not square", r"the images are 16×12 pixels; give square images"),
    ("unreadable", r"image '.*broken\.png' cannot be read .*; give PNG or JPEG files"),
    ("16-bit", r"image '.*deep\.png' has Pillow mode 'I;16' .*; save it as 8-bit"),
    ("train beside classes", r"holds train/ beside other folders \(square\)"),
    ("unknown test class", r"held-out folder '.*test' has class folder\(s\) circle that the "
                           r"training folder lacks"),
    ("one image", r"1 image\(s\) make no held-out split; give at least two images per class"),
])
def test_bad_image_folders_are_one_clear_error_naming_the_folder_or_file(tmp_path, damage,
                                                                         message):
    root = tmp_path / "data"
    grey = np.zeros((16, 16), np.uint8)
    if damage != "missing":
        root.mkdir()
    if damage == "no classes":
        _png(root / "loose.png", grey)
    if damage in ("empty class", "other size", "unreadable", "16-bit"):
        make_shapes(root, per_class=3)
    if damage == "empty class":
        for f in (root / "vbar").iterdir():
            f.unlink()
        (root / "vbar" / "notes.txt").write_text("to do")
    if damage == "other size":
        _png(root / "square" / "odd.png", np.zeros((16, 20), np.uint8))
    if damage == "not square":
        _png(root / "a" / "1.png", np.zeros((12, 16), np.uint8))
    if damage == "unreadable":
        (root / "square" / "broken.png").write_bytes(b"\x89PNG not really")
    if damage == "16-bit":
        _png(root / "square" / "deep.png", np.zeros((16, 16), np.uint16))  # mode I;16
    if damage == "train beside classes":
        make_shapes(root / "train", per_class=2)
        _png(root / "square" / "1.png", grey)
    if damage == "unknown test class":
        make_shapes(root / "train", per_class=2)
        _png(root / "test" / "circle" / "1.png", grey)
    if damage == "one image":
        _png(root / "only" / "1.png", grey)
    with pytest.raises(InputError, match=message):
        load_dataset(f"imagefolder:{root}", "train")


# ------------------------------------------------------------------ .npz
def test_npz_layouts_and_pixel_types_give_the_same_images(tmp_path):
    arrays = _arrays()
    np.savez(tmp_path / "nhwc.npz", **arrays)
    nchw = {**arrays, "x_train": arrays["x_train"].transpose(0, 3, 1, 2),
            "x_test": arrays["x_test"].transpose(0, 3, 1, 2)}
    np.savez_compressed(tmp_path / "nchw.npz", **nchw)
    a = load_dataset(str(tmp_path / "nhwc.npz"), "test")
    b = load_dataset(str(tmp_path / "nchw.npz"), "test")
    assert a.images.shape == (12, 3, 8, 8) and torch.equal(a.images, b.images)
    assert torch.equal(a.images, torch.from_numpy(nchw["x_test"]))
    assert a.checksum == b.checksum  # the contents, not the layout or compression
    floats = {**arrays, "x_train": arrays["x_train"] / 255.0, "x_test": arrays["x_test"] / 255.0}
    np.savez(tmp_path / "float.npz", **floats)
    c = load_dataset(str(tmp_path / "float.npz"), "test")
    assert c.images.dtype == torch.float32
    torch.testing.assert_close(c[3][0], a[3][0], atol=1e-4, rtol=1e-4)  # same normalised input
    grey = {**arrays, "x_train": arrays["x_train"][..., 0], "x_test": arrays["x_test"][..., 0]}
    np.savez(tmp_path / "grey.npz", **grey)
    info = get_info(str(tmp_path / "grey.npz"))
    assert (info.in_channels, info.image_size, info.num_classes) == (1, 8, 3)
    assert info.format == "npz" and info.train_count == 30


@pytest.mark.parametrize("change, message", [
    ("missing", r"file '.*missing\.npz' does not exist; give an \.npz file holding x_train"),
    ("no y_test", r"lacks y_test \(it holds x_train, y_train, x_test\)"),
    ("pickled", r"holds pickled objects, which are not loaded; save plain numeric arrays"),
    ("not a zip", r"is not an \.npz \(zip\) archive; save one with np\.savez"),
    ("flat", r"x_train has shape \(30, 192\); .*\(flat rows\? reshape them"),
    ("not square", r"x_train has shape \(30, 8, 6, 3\), whose images are not square"),
    ("nan", r"x_test: image 2 \(and 0 more\) holds NaN or infinite pixels"),
    ("label beyond", r"the test labels include 7, beyond the training classes 0\.\.2"),
    ("class gap", r"class\(es\) 1 have no training images; labels must be contiguous 0\.\.K-1"),
    ("negative", r"y_train holds the label -1; labels must be class indices"),
    ("one-hot", r"y_train has shape \(30, 3\); .*\(one-hot\? give y\.argmax\(1\)\)"),
    ("count", r"y_test holds 11 labels for 12 images"),
    ("wide ints", r"x_train has int64 pixels from 0 to 300; give uint8"),
    ("split shapes", r"x_train images are \(C, H, W\) = \(3, 8, 8\) but x_test's are"),
])
def test_bad_npz_files_are_one_clear_error(tmp_path, change, message):
    arrays = _arrays()
    path = tmp_path / ("missing.npz" if change == "missing" else "data.npz")
    if change == "no y_test":
        del arrays["y_test"]
    if change == "pickled":
        arrays["y_test"] = np.array([{"a": 1}] * 12, dtype=object)
    if change == "flat":
        arrays["x_train"] = arrays["x_train"].reshape(30, -1)
    if change == "not square":
        arrays["x_train"] = arrays["x_train"][:, :, :6]
    if change == "nan":
        arrays["x_test"] = arrays["x_test"].astype(np.float32)
        arrays["x_train"] = arrays["x_train"].astype(np.float32)
        arrays["x_test"][2, 1, 1, 0] = np.nan
    if change == "label beyond":
        arrays["y_test"][5] = 7
    if change == "class gap":
        arrays["y_train"] = np.where(arrays["y_train"] == 1, 2, arrays["y_train"])
    if change == "negative":
        arrays["y_train"][0] = -1
    if change == "one-hot":
        arrays["y_train"] = np.eye(3)[arrays["y_train"]]
    if change == "count":
        arrays["y_test"] = arrays["y_test"][:11]
    if change == "wide ints":
        arrays["x_train"] = arrays["x_train"].astype(np.int64)
        arrays["x_train"][0, 0, 0, 0] = 300
    if change == "split shapes":
        arrays["x_test"] = arrays["x_test"][:, :4, :4]
    if change == "not a zip":
        path.write_bytes(b"not a zip archive")
    elif change != "missing":
        np.savez(path, **arrays)
    with pytest.raises(InputError, match=message):
        make_loaders(str(path))


# ------------------------------------------------------------------ factories
def test_a_factory_gives_its_datasets_as_given_and_its_training_split_lazily(
        tmp_path, monkeypatch):
    module = write_factory(tmp_path, FACTORY, monkeypatch)
    spec = f"{module}:make"
    train, test, info = make_loaders(spec, batch_size=8, eval_batch_size=4, seed=1)
    assert (info.in_channels, info.image_size, info.num_classes) == (1, 8, 4)
    assert info.format == "factory" and info.mean == (0.0,) and info.std == (1.0,)
    assert isinstance(train, DataLoader) and isinstance(test, BatchLoader)
    made = sys.modules[module].make()
    x = torch.cat([b for b, _ in test])
    assert torch.equal(x, made[1].tensors[0])  # used as given: no normalisation
    assert len(train) == 4 and sum(len(y) for _, y in train) == 30
    flips = torch.cat([b for b, _ in train])  # the random flip is drawn afresh
    assert flips.shape == (30, 1, 8, 8)
    c1 = dataset_checksum(spec)
    sys.modules.pop(module)
    from corranalysis.data import sources
    sources._CACHE.clear()
    assert dataset_checksum(spec) == c1  # random transforms are seeded while hashing
    subset = load_dataset(spec, "train", size=10, seed=0)
    assert len(subset) == 10


@pytest.mark.parametrize("body, message", [
    ("raise ValueError('no data here')",
     r"importing module '\w+' raised ValueError: no data here"),
    ("x = 1", r"module '\w+' has no attribute 'make'"),
    ("make = 3", r"'make' is int, not callable"),
    ("def make():\n    raise RuntimeError('disk full')",
     r"calling the factory raised RuntimeError: disk full"),
    ("def make():\n    return [1, 2, 3]", r"the factory returned list; it must return \(train, "
                                           r"test\) torch Datasets"),
    ("def make():\n    return 'ab'", r"the factory returned str"),
    ("def make():\n    return [torch.zeros(1, 4, 4)] * 3, [(torch.zeros(1, 4, 4), 0)]",
     r"\(train\): item 0 is Tensor; items must be \(x, y\) pairs"),
    ("def make():\n    return [(torch.zeros(1, 4, 4, dtype=torch.uint8), 0)] * 2, "
     "[(torch.zeros(1, 4, 4), 0)]", r"item 0: x is torch.uint8; give a float tensor"),
    ("def make():\n    return [(torch.zeros(1, 4, 4), 0), (torch.zeros(1, 5, 5), 0)], []",
     r"\(train\): item 1 has x of shape \(1, 5, 5\), but item 0 of the training data has"),
    ("def make():\n    return [(torch.zeros(1, 4, 4), 0)], [(torch.full((1, 4, 4), "
     "float('nan')), 0)]", r"\(test\): item 0: x holds NaN or infinite values"),
    ("def make():\n    return [(torch.zeros(1, 4, 4), 0.5)], [(torch.zeros(1, 4, 4), 0)]",
     r"item 0: the label is float 0\.5; give an int class index"),
    ("def make():\n    return [(torch.zeros(1, 4, 4), 0)], []", r"\(test\) is empty"),
    ("def make():\n    return [(torch.zeros(1, 4, 4), 1)], [(torch.zeros(1, 4, 4), 0)]",
     r"class\(es\) 0 have no training images"),
])
def test_bad_factories_are_one_clear_error_naming_the_spec(tmp_path, monkeypatch, body, message):
    module = write_factory(tmp_path, "import torch\n" + body + "\n", monkeypatch)
    with pytest.raises(InputError, match=rf"data set '{module}:make'.*{message}"):
        make_loaders(f"{module}:make")


def test_an_unimportable_factory_says_how_to_make_it_importable():
    with pytest.raises(InputError, match=r"module 'not_a_module_abc' cannot be found; install "
                                         r"it, put its folder on PYTHONPATH"):
        make_loaders("not_a_module_abc:make")


# ------------------------------------------------------------------ the stages
def test_cnn4_trains_on_an_image_folder_above_chance_and_records_the_spec(shapes, tmp_path):
    spec = f"imagefolder:{shapes}"
    run = train("cnn4", spec, epochs=1, out=tmp_path / "run", batch_size=8, device="cpu",
                progress=False)
    assert run["test_accuracy"] > 0.6  # chance is 1/3
    assert run["dataset"] == spec and run["dataset_checksum"] == dataset_checksum(spec)
    assert (run["in_channels"], run["num_classes"], run["image_size"]) == (1, 3, 16)
    trained = load_trained(tmp_path / "run" / "model.pt", device="cpu")  # spec from run.json
    assert trained.dataset == spec and trained.info.classes == SHAPES
    assert evaluate(trained.model, trained.test, "cpu").accuracy == pytest.approx(
        run["test_accuracy"])
    assert json.loads((tmp_path / "run" / "run.json").read_text())["dataset"] == spec


def _checkpoint(path: Path, channels: int, classes: int, size: int) -> Path:
    torch.manual_seed(0)
    torch.save(resolve_model("cnn4", channels, classes, image_size=size).state_dict(), path)
    return path


def test_load_trained_gives_the_data_of_every_kind_of_spec(shapes, tmp_path, monkeypatch):
    np.savez(tmp_path / "arrays.npz", **_arrays(size=8, channels=3))
    module = write_factory(tmp_path, FACTORY, monkeypatch)
    cases = [(f"imagefolder:{shapes}", (1, 3, 16), 60), (str(tmp_path / "arrays.npz"),
                                                         (3, 3, 8), 12),
             (f"{module}:make", (1, 4, 8), 10)]
    for spec, (c, k, s), n_test in cases:
        ckpt = _checkpoint(tmp_path / f"{c}{k}{s}.pt", c, k, s)
        trained = load_trained(ckpt, "cnn4", spec, device="cpu", batch_size=16)
        assert (trained.info.in_channels, trained.info.num_classes,
                trained.info.image_size) == (c, k, s)
        assert trained.dataset == spec and len(trained.test.dataset) == n_test
        x, y = next(iter(trained.train))
        assert x.shape[1:] == (c, s, s) and x.dtype == torch.float32 and len(x) == 16


def test_datasets_and_dataloaders_are_taken_where_a_name_is(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(50, 1, 8, 8, generator=g), torch.arange(50) % 5
    train_ds, test_ds = TensorDataset(x[:40], y[:40]), TensorDataset(x[40:], y[40:])
    ckpt = _checkpoint(tmp_path / "m.pt", 1, 5, 8)
    pair = load_trained(ckpt, "cnn4", (train_ds, test_ds), device="cpu", batch_size=10)
    assert pair.info.num_classes == 5 and len(pair.train) == 4
    assert torch.equal(torch.cat([b for b, _ in pair.test]), x[40:])
    alone = load_trained(ckpt, "cnn4", test_ds, device="cpu")  # evaluation data only
    assert alone.train is None and alone.info.num_classes == 5
    loader = DataLoader(test_ds, batch_size=3)
    given = load_trained(ckpt, "cnn4", loader, device="cpu")
    assert given.test is loader and given.info.image_size == 8
    assert evaluate(given.model, given.test, "cpu").accuracy == pytest.approx(
        evaluate(alone.model, alone.test, "cpu").accuracy)
    loaders = load_trained(ckpt, "cnn4", (DataLoader(train_ds), loader), device="cpu")
    assert loaders.test is loader and loaders.train is not None
    tr, te, info = as_loaders((train_ds, test_ds), batch_size=8, train_size=16)
    assert len(tr.dataset) == 16 and isinstance(te.dataset, ImageDataset)
    with pytest.raises(InputError, match="not one of each"):
        as_loaders((train_ds, loader))
    with pytest.raises(InputError, match=r"data \(int\): give a data set name or spec, a torch "
                                         r"Dataset or DataLoader"):
        as_loaders(3)
    wide = TensorDataset(x[40:], torch.full((10,), 7))
    with pytest.raises(InputError, match=r"labels run to 7, but the model has 5 classes"):
        load_trained(ckpt, "cnn4", wide, device="cpu")


def test_the_cli_evaluates_a_checkpoint_on_an_npz_spec(tmp_path, run_cli):
    np.savez(tmp_path / "arrays.npz", **_arrays(size=8, channels=3))
    ckpt = _checkpoint(tmp_path / "m.pt", 3, 3, 8)
    code, out = run_cli("evaluate", ckpt, "--model", "cnn4", "--dataset",
                        tmp_path / "arrays.npz", "--device", "cpu", "--json")
    assert code == 0, out
    assert json.loads(out)["n"] == 12
    code, out = run_cli("evaluate", ckpt, "--model", "cnn4", "--dataset",
                        f"imagefolder:{tmp_path / 'none'}", "--device", "cpu")
    assert code == 2 and "folder" in out and "does not exist" in out and "Traceback" not in out
