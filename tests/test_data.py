"""Data sets: real formats parsed and checked, search order, safe unpickling, downloads."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from corranalysis import InputError
from corranalysis.data import (
    DATASETS,
    RemoteFile,
    augment_batch,
    dataset_checksum,
    download,
    load_dataset,
    locate,
    make_loaders,
    read_cifar,
    resolve_name,
    write_idx,
)
from corranalysis.data.cifar import load_batch
from corranalysis.data.download import sha256_of

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache or $CORRANALYSIS_DATA leaks into these tests."""
    monkeypatch.setenv("CORRANALYSIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CORRANALYSIS_DATA", raising=False)


def make_idx_set(folder: Path, n_train=12, n_test=5, gz=True, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, arr in arrays.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arr)
    return arrays


def _cifar_batch(n, key, classes, rng) -> dict:
    return {b"batch_label": b"batch", key: rng.integers(0, classes, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [b"f%d.png" % i for i in range(n)]}


def make_cifar10_tar(path: Path, n=4, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    batches = {f"data_batch_{i}": _cifar_batch(n, b"labels", 10, rng) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(n, b"labels", 10, rng)
    batches["batches.meta"] = {b"label_names": [b"c%d" % i for i in range(10)]}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in batches.items():
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return batches


def test_idx_files_gzipped_or_not_parse_to_their_arrays(tmp_path):
    for gz in (True, False):
        arrays = make_idx_set(tmp_path / f"d{gz}", gz=gz)
        ds = load_dataset("fashion-mnist", "train", data_dir=tmp_path / f"d{gz}")
        assert ds.images.shape == (12, 1, 28, 28) and ds.images.dtype == torch.uint8
        np.testing.assert_array_equal(ds.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
        np.testing.assert_array_equal(ds.labels.numpy(), arrays["train-labels-idx1-ubyte"])
        x, y = ds[0]
        assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
        assert x.mean().item() == pytest.approx(
            (arrays["train-images-idx3-ubyte"][0] / 255.0 - 0.2860).mean() / 0.3530, rel=1e-5)


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:-3], "truncated"),
    (lambda b: b"\x00\x00\x09\x99" + b[4:], "magic number"),
    (lambda b: b[:10], "truncated"),
])
def test_corrupted_idx_files_are_errors_naming_the_file(tmp_path, damage, message):
    make_idx_set(tmp_path, gz=False)
    f = tmp_path / "train-images-idx3-ubyte"
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(InputError, match=rf"train-images-idx3-ubyte.*{message}"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path)


def test_a_broken_gzip_and_out_of_range_labels_are_errors(tmp_path):
    make_idx_set(tmp_path)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(InputError, match="corrupted or truncated"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path)
    make_idx_set(tmp_path / "b")
    write_idx(tmp_path / "b" / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 10, 3, 4]))
    with pytest.raises(InputError, match="label 10 outside 0..9"):
        load_dataset("mnist", "test", data_dir=tmp_path / "b")


def test_cifar_tar_and_extracted_folder_parse_the_same(tmp_path):
    batches = make_cifar10_tar(tmp_path / "cifar-10-python.tar.gz")
    x, y = read_cifar(tmp_path / "cifar-10-python.tar.gz", "cifar10", "train")
    assert x.shape == (20, 3, 32, 32) and y.shape == (20,)
    np.testing.assert_array_equal(x[:4].reshape(4, -1), batches["data_batch_1"][b"data"])
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    x2, y2 = read_cifar(tmp_path / "x" / "cifar-10-batches-py", "cifar10", "train")
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    ds = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert len(ds) == 4 and ds.info.num_classes == 10 and ds.augment is False


def test_cifar100_uses_the_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    with tarfile.open(tmp_path / "cifar-100-python.tar.gz", "w:gz") as tar:
        for name in ("train", "test"):
            batch = _cifar_batch(3, b"fine_labels", 100, rng)
            batch[b"coarse_labels"] = [0, 1, 2]
            data = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    ds = load_dataset("cifar-100", "train", data_dir=tmp_path)
    assert ds.info.name == "cifar100" and len(ds) == 3 and ds.augment


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_MARKER",))


def test_the_restricted_unpickler_refuses_a_crafted_pickle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    crafted = pickle.dumps({b"data": _Evil()}, protocol=2)
    with pytest.raises(InputError, match="refused.*not allowed"):
        load_batch(crafted, "evil_batch")
    assert not (tmp_path / "EVIL_MARKER").exists()


def test_search_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "explicit", seed=1)
    make_idx_set(tmp_path / "env", seed=2)
    make_idx_set(tmp_path / "cache" / "mnist", seed=3)
    monkeypatch.setenv("CORRANALYSIS_DATA", str(tmp_path / "env"))
    explicit = locate("mnist", tmp_path / "explicit")
    assert explicit["t10k-images-idx3-ubyte"].parent.name == "explicit"
    assert locate("mnist")["t10k-images-idx3-ubyte"].parent.name == "env"
    monkeypatch.delenv("CORRANALYSIS_DATA")
    assert locate("mnist")["t10k-images-idx3-ubyte"].parent.name == "mnist"


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_comes_before_the_cache(tmp_path):
    make_idx_set(tmp_path / "cache" / "fashion-mnist")
    assert locate("fashion-mnist")["t10k-images-idx3-ubyte"].parent == DEBIAN


def test_nothing_found_and_no_download_names_the_three_ways(tmp_path):
    with pytest.raises(InputError, match=r"--data-dir.*CORRANALYSIS_DATA.*download"):
        locate("cifar10", tmp_path / "empty", download_missing=False)


def test_subsets_are_seeded_and_deterministic(tmp_path):
    make_idx_set(tmp_path, n_train=50)
    a = load_dataset("mnist", "train", data_dir=tmp_path, size=10, seed=3)
    b = load_dataset("mnist", "train", data_dir=tmp_path, size=10, seed=3)
    c = load_dataset("mnist", "train", data_dir=tmp_path, size=10, seed=4)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_loaders_batch_normalised_tensors_and_shuffle_with_a_seed(tmp_path):
    make_idx_set(tmp_path, n_train=10, n_test=7)
    train, test, info = make_loaders("mnist", batch_size=4, eval_batch_size=3, data_dir=tmp_path)
    assert info.name == "mnist" and len(train) == 3 and len(test) == 3
    xs = [x for x, _ in test]
    assert [x.shape[0] for x in xs] == [3, 3, 1] and xs[0].dtype == torch.float32
    order1 = torch.cat([y for _, y in train])
    train.generator.manual_seed(0)
    order2 = torch.cat([y for _, y in train])
    assert torch.equal(order1, order2)


def test_cifar_augmentation_keeps_shapes_and_pixels():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    out = augment_batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert set(out.unique().tolist()) <= set(x.unique().tolist()) | {0.0}


def test_names_are_forgiving_and_unknown_ones_list_the_valid(tmp_path):
    assert resolve_name("Fashion_MNIST") == "fashion-mnist"
    assert resolve_name("CIFAR-10") == "cifar10"
    with pytest.raises(InputError, match="valid: fashion-mnist, mnist, cifar10, cifar100"):
        resolve_name("imagenet")


# ------------------------------------------------------------------ downloads on loopback
@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_download_verifies_the_checksum_and_writes_atomically(tmp_path, server):
    root, url = server
    (root / "good.gz").write_bytes(gzip.compress(b"payload"))
    good = RemoteFile("good.gz", url + "good.gz", sha256_of(root / "good.gz"))
    path = download(good, tmp_path / "dl")
    assert path.read_bytes() == (root / "good.gz").read_bytes()
    bad = RemoteFile("bad.gz", url + "good.gz", "0" * 64)
    with pytest.raises(InputError, match="failed its checksum"):
        download(bad, tmp_path / "dl")
    missing = RemoteFile("gone.gz", url + "gone.gz", "0" * 64)
    with pytest.raises(InputError, match="download of .*gone.gz failed"):
        download(missing, tmp_path / "dl")
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["good.gz"]


def test_a_missing_data_set_is_downloaded_into_the_cache(tmp_path, server, monkeypatch):
    root, url = server
    make_idx_set(root)
    info = DATASETS["mnist"]
    files = tuple(RemoteFile(f.name, url + f.name, sha256_of(root / f.name)) for f in info.files)
    monkeypatch.setitem(DATASETS, "mnist", info.__class__(**{**info.__dict__, "files": files}))
    ds = load_dataset("mnist", "test")
    assert len(ds) == 5 and ds.files[0].parent == tmp_path / "cache" / "mnist"


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="dataset-fashion-mnist not installed")
def test_the_real_fashion_mnist_has_the_official_counts():
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert sorted(train.labels.unique().tolist()) == list(range(10))
    assert train.images.shape[1:] == (1, 28, 28)
    assert len(dataset_checksum("fashion-mnist")) == 64
