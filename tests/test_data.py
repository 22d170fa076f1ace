"""Data sets: real formats parsed and checked, search order, safe unpickling, downloads."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import pickle
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from data_files import (
    DEBIAN,
    IDX_STEMS,
    cifar_batches,
    make_idx_set,
    needs_fashion,
    write_cifar_tar,
)

from corranalysis import InputError
from corranalysis.data import (
    DATASETS,
    BatchLoader,
    RemoteFile,
    augment_batch,
    dataset_checksum,
    download,
    load_dataset,
    locate,
    make_loaders,
    official_checksum,
    read_cifar,
    read_idx,
    resolve_name,
    write_idx,
)
from corranalysis.data.cifar import load_batch
from corranalysis.data.download import sha256_of
from corranalysis.data.idx import IMAGES_MAGIC


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache or $CORRANALYSIS_DATA leaks into these tests."""
    monkeypatch.setenv("CORRANALYSIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CORRANALYSIS_DATA", raising=False)


# ------------------------------------------------------------------ IDX (MNIST, Fashion-MNIST)
@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_gzipped_or_not_parse_to_their_arrays(tmp_path, gz):
    arrays = make_idx_set(tmp_path, gz=gz)
    ds = load_dataset("fashion-mnist", "train", data_dir=tmp_path)
    assert ds.images.shape == (12, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and len(ds) == 12
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.labels.numpy(), arrays["train-labels-idx1-ubyte"])
    x, y = ds[3]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
    expected = (arrays["train-images-idx3-ubyte"][3] / 255.0 - 0.2860) / 0.3530
    np.testing.assert_allclose(x[0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert y == arrays["train-labels-idx1-ubyte"][3] and not ds.augment
    assert [f.name for f in ds.files] == [s + (".gz" if gz else "") for s in IDX_STEMS[:2]]
    test = load_dataset("fashion-mnist", "test", data_dir=tmp_path)
    assert len(test) == 5 and test.split == "test"


def test_the_checksum_is_of_the_contents_so_gzipped_and_plain_copies_agree(tmp_path):
    make_idx_set(tmp_path / "gz", gz=True)
    make_idx_set(tmp_path / "plain", gz=False)
    a = load_dataset("mnist", data_dir=tmp_path / "gz")
    b = load_dataset("mnist", data_dir=tmp_path / "plain")
    assert a.checksum == b.checksum and len(a.checksum) == 64
    gz = dataset_checksum("mnist", tmp_path / "gz")
    assert gz == dataset_checksum("mnist", tmp_path / "plain")
    make_idx_set(tmp_path / "other", gz=True, seed=1)
    assert dataset_checksum("mnist", tmp_path / "other") != gz


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:-3], "truncated or corrupted: its header says 12x28x28 = 9408 bytes"),
    (lambda b: b + b"\x00", "truncated or corrupted"),
    (lambda b: b"\x00\x00\x09\x99" + b[4:], "not an IDX images file: magic number 0x00000999"),
    (lambda b: b"\x00\x00\x08\x01" + b[4:], "magic number 0x00000801, expected 0x00000803"),
    (lambda b: b[:10], "truncated: 10 bytes"),
])
def test_corrupted_idx_files_are_errors_naming_the_file(tmp_path, damage, message):
    make_idx_set(tmp_path, gz=False)
    f = tmp_path / "train-images-idx3-ubyte"
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(InputError, match=rf"train-images-idx3-ubyte.*{message}"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path)


def test_a_broken_gzip_is_an_error_naming_the_file(tmp_path):
    make_idx_set(tmp_path)
    f = tmp_path / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(InputError, match=r"train-images-idx3-ubyte\.gz.*corrupted or truncated"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path)
    data = bytearray(gzip.compress(b"\x00" * 5000))
    data[20:30] = b"\xff" * 10
    f.write_bytes(bytes(data))
    with pytest.raises(InputError, match="broken gzip"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path)


def test_labels_out_of_range_and_count_mismatches_are_errors(tmp_path):
    make_idx_set(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 10, 3, 4]))
    with pytest.raises(InputError, match=r"t10k-labels-idx1-ubyte\.gz.*label 10 outside 0..9"):
        load_dataset("mnist", "test", data_dir=tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 3]))
    with pytest.raises(InputError, match="disagree: 5 images, 3 labels"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_images_of_the_wrong_size_are_refused(tmp_path):
    make_idx_set(tmp_path, size=20)
    with pytest.raises(InputError, match=r"shape \(1, 20, 20\), expected \(1, 28, 28\)"):
        load_dataset("mnist", "train", data_dir=tmp_path)


def test_read_and_write_idx_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.gz", arr), IMAGES_MAGIC), arr)
    with pytest.raises(InputError, match="1-D labels or 3-D"):
        write_idx(tmp_path / "b", np.zeros((2, 2)))


# ------------------------------------------------------------------ CIFAR
def test_cifar10_tar_and_extracted_folder_parse_the_same(tmp_path):
    batches = cifar_batches("cifar10", n=4)
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", batches)
    x, y = read_cifar(tmp_path / "cifar-10-python.tar.gz", "cifar10", "train")
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.uint8 and y.shape == (20,)
    np.testing.assert_array_equal(x[:4].reshape(4, -1), batches["data_batch_1"][b"data"])
    np.testing.assert_array_equal(y[4:8], batches["data_batch_2"][b"labels"])
    # pixel layout: 1024 red, then green, then blue values, each row-major 32 x 32
    assert x[0, 1, 0, 5] == batches["data_batch_1"][b"data"][0, 1024 + 5]
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    x2, y2 = read_cifar(tmp_path / "x" / "cifar-10-batches-py", "cifar10", "train")
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    from_tar = load_dataset("cifar10", "test", data_dir=tmp_path)
    from_folder = load_dataset("cifar-10", "test", data_dir=tmp_path / "x")
    assert len(from_tar) == 4 and from_tar.info.num_classes == 10 and from_tar.augment is False
    assert from_tar.files == [tmp_path / "cifar-10-python.tar.gz"]
    assert from_folder.files == [tmp_path / "x" / "cifar-10-batches-py" / "test_batch"]
    assert from_tar.checksum == from_folder.checksum
    assert dataset_checksum("cifar10", tmp_path) == dataset_checksum("cifar10", tmp_path / "x")
    assert load_dataset("cifar10", "train", data_dir=tmp_path / "x").augment


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
def test_cifar100_reads_the_fine_labels_of_pickles_of_any_protocol(tmp_path, protocol):
    batches = cifar_batches("cifar100", n=3)
    write_cifar_tar(tmp_path / "cifar-100-python.tar.gz", batches, "cifar100", protocol)
    ds = load_dataset("CIFAR_100", "train", data_dir=tmp_path)
    assert ds.info.name == "cifar100" and len(ds) == 3 and ds.augment
    assert ds.labels.tolist() == batches["train"][b"fine_labels"]
    assert ds.images.shape == (3, 3, 32, 32)


@pytest.mark.parametrize("change,message", [
    (lambda b: b.update({b"labels": [0, 1, 2, 10]}), "labels outside 0..9"),
    (lambda b: b.update({b"data": np.zeros((4, 100), np.uint8)}), r"expected uint8 \(N, 3072\)"),
    (lambda b: b.update({b"data": np.zeros((4, 3072), np.float32)}), "float32"),
    (lambda b: b.pop(b"labels"), "lacks 'data' or 'labels'"),
])
def test_malformed_cifar_batches_are_errors_naming_the_batch(tmp_path, change, message):
    batches = cifar_batches("cifar10", n=4)
    change(batches["test_batch"])
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", batches)
    with pytest.raises(InputError, match=rf"test_batch.*{message}"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


def test_truncated_cifar_archives_and_pickles_are_errors(tmp_path):
    archive = write_cifar_tar(tmp_path / "a" / "cifar-10-python.tar.gz", cifar_batches())
    archive.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(InputError, match=r"cifar-10-python\.tar\.gz.*corrupted or truncated"):
        load_dataset("cifar10", "train", data_dir=tmp_path / "a")
    good = pickle.dumps(cifar_batches()["test_batch"], protocol=2)
    write_cifar_tar(tmp_path / "b" / "cifar-10-python.tar.gz", cifar_batches(),
                    raw={"test_batch": good[: len(good) // 2]})
    with pytest.raises(InputError, match="test_batch.*corrupted or truncated"):
        load_dataset("cifar10", "test", data_dir=tmp_path / "b")
    write_cifar_tar(tmp_path / "c" / "cifar-10-python.tar.gz",
                    {"data_batch_1": cifar_batches()["data_batch_1"]})
    with pytest.raises(InputError, match="lacks cifar-10-batches-py/data_batch_2"):
        load_dataset("cifar10", "train", data_dir=tmp_path / "c")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_the_restricted_unpickler_refuses_a_crafted_pickle(tmp_path):
    marker = tmp_path / "EVIL_MARKER"
    crafted = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    with pytest.raises(InputError, match=r"refused: global (posix|os)\.system is not allowed"):
        load_batch(crafted, "evil_batch")
    assert not marker.exists()
    # the same batch inside an otherwise official-looking archive, through load_dataset
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", cifar_batches(),
                    raw={"test_batch": crafted})
    with pytest.raises(InputError, match="test_batch.*refused"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert not marker.exists()
    sneaky = pickle.dumps({b"data": _Codec()}, protocol=2)
    with pytest.raises(InputError, match="encoding 'rot13' is not allowed"):
        load_batch(sneaky, "codec_batch")


class _Codec:
    def __reduce__(self):
        import _codecs

        return (_codecs.encode, ("text", "rot13"))


# ------------------------------------------------------------------ search order
def test_search_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "explicit", seed=1)
    make_idx_set(tmp_path / "env", seed=2)
    make_idx_set(tmp_path / "cache" / "mnist", seed=3)
    monkeypatch.setenv("CORRANALYSIS_DATA", str(tmp_path / "env"))
    stem = "t10k-images-idx3-ubyte"
    assert locate("mnist", tmp_path / "explicit")[stem].parent.name == "explicit"
    assert locate("mnist")[stem].parent.name == "env"
    monkeypatch.delenv("CORRANALYSIS_DATA")
    assert locate("mnist")[stem].parent.name == "mnist"


@needs_fashion
def test_debian_fashion_mnist_comes_after_data_dir_and_env_and_before_the_cache(
        tmp_path, monkeypatch):
    make_idx_set(tmp_path / "explicit")
    make_idx_set(tmp_path / "env" / "fashion-mnist")  # a per-data-set sub-folder also counts
    make_idx_set(tmp_path / "cache" / "fashion-mnist")
    stem = "t10k-images-idx3-ubyte"
    assert locate("fashion-mnist")[stem].parent == DEBIAN
    monkeypatch.setenv("CORRANALYSIS_DATA", str(tmp_path / "env"))
    assert locate("fashion-mnist")[stem].parent == tmp_path / "env" / "fashion-mnist"
    assert locate("fashion-mnist", tmp_path / "explicit")[stem].parent == tmp_path / "explicit"


def test_torchvision_layouts_are_found(tmp_path):
    make_idx_set(tmp_path / "MNIST" / "raw", gz=False)
    assert len(load_dataset("mnist", "test", data_dir=tmp_path)) == 5


def test_a_data_dir_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"--data-dir '.*nowhere' does not exist"):
        locate("mnist", tmp_path / "nowhere")
    monkeypatch.setenv("CORRANALYSIS_DATA", str(tmp_path / "gone"))
    with pytest.raises(InputError, match=r"\$CORRANALYSIS_DATA '.*gone' does not exist"):
        locate("mnist")


def test_nothing_found_and_no_download_names_the_three_ways(tmp_path):
    (tmp_path / "empty").mkdir()
    write_idx(tmp_path / "empty" / "t10k-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(InputError) as err:
        load_dataset("mnist", data_dir=tmp_path / "empty", download=False)
    message = str(err.value)
    assert "lacks train-images-idx3-ubyte" in message  # what a partial folder misses
    assert "--data-dir" in message and "$CORRANALYSIS_DATA" in message
    assert "download=True" in message and str(tmp_path / "cache" / "mnist") in message
    with pytest.raises(InputError, match=r"cifar-10-python\.tar\.gz or the extracted"):
        locate("cifar10", tmp_path / "empty", download_missing=False)


# ------------------------------------------------------------------ subsets, loaders, names
def test_subsets_are_seeded_deterministic_and_in_file_order(tmp_path):
    make_idx_set(tmp_path, n_train=50)
    full = load_dataset("mnist", "train", data_dir=tmp_path)
    a = load_dataset("mnist", "train", data_dir=tmp_path, size=10, seed=3)
    b = load_dataset("mnist", "train", data_dir=tmp_path, size=10, seed=3)
    c = load_dataset("mnist", "train", data_dir=tmp_path, size=10, seed=4)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images) and len(a) == 10
    rows = [int(np.flatnonzero((full.images == img).all(dim=(1, 2, 3)).numpy())[0])
            for img in a.images]
    assert rows == sorted(rows)
    assert len(load_dataset("mnist", "train", data_dir=tmp_path, size=500)) == 50
    with pytest.raises(InputError, match="subset size 0"):
        load_dataset("mnist", "train", data_dir=tmp_path, size=0)
    with pytest.raises(InputError, match="split 'valid' is unknown; valid: train, test"):
        load_dataset("mnist", "valid", data_dir=tmp_path)


def test_loaders_yield_normalised_batches_and_shuffle_with_a_seed(tmp_path):
    make_idx_set(tmp_path, n_train=10, n_test=7)
    train, test, info = make_loaders("mnist", batch_size=4, eval_batch_size=3, data_dir=tmp_path)
    assert info is DATASETS["mnist"] and len(train) == 3 and len(test) == 3
    batches = list(test)
    assert [x.shape for x, _ in batches] == [(3, 1, 28, 28)] * 2 + [(1, 1, 28, 28)]
    x, y = batches[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    torch.testing.assert_close(x, test.dataset.normalise(test.dataset.images[:3]))
    assert torch.equal(torch.cat([y for _, y in batches]), test.dataset.labels)  # file order
    order1 = torch.cat([y for _, y in train])
    assert sorted(order1.tolist()) == sorted(train.dataset.labels.tolist())
    train.generator.manual_seed(0)
    assert torch.equal(order1, torch.cat([y for _, y in train]))
    again, _, _ = make_loaders("mnist", batch_size=4, data_dir=tmp_path, seed=0)
    assert torch.equal(order1, torch.cat([y for _, y in again]))
    assert len(train.dataset) == 10 and train.batch_size == 4


def test_prefetching_gives_the_same_batches_and_stops_cleanly(tmp_path):
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", cifar_batches(n=40))
    ds = load_dataset("cifar10", "train", data_dir=tmp_path)
    plain = list(BatchLoader(ds, 32, shuffle=True, seed=5))
    ahead = list(BatchLoader(ds, 32, shuffle=True, seed=5, prefetch=2))
    assert len(plain) == len(ahead) == 7
    for (x1, y1), (x2, y2) in zip(plain, ahead, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    threads = threading.active_count()
    for i, _ in enumerate(BatchLoader(ds, 4, shuffle=True, prefetch=1)):
        if i == 1:
            break
    time.sleep(0.05)
    assert threading.active_count() == threads


def test_cifar_augmentation_crops_padded_images_and_flips_them():
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = augment_batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flipped = 0
    for i in range(len(x)):
        crops = [(padded[i, :, dy:dy + 32, dx:dx + 32], f) for dy in range(9) for dx in range(9)
                 for f in (False, True)]
        hits = [f for c, f in crops if torch.equal(out[i], c.flip(-1) if f else c)]
        assert hits, f"image {i} is not a crop of its padded version"
        flipped += hits[0]
    assert 10 < flipped < 54  # about half are flipped
    again = augment_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_only_the_cifar_training_loader_augments(tmp_path):
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", cifar_batches(n=8))
    train, test, _ = make_loaders("cifar10", batch_size=16, data_dir=tmp_path)
    assert train.augment and not test.augment
    x1 = torch.cat([x for x, _ in train])
    train.generator.manual_seed(0)
    assert torch.equal(x1, torch.cat([x for x, _ in train]))
    plain, _, _ = make_loaders("cifar10", batch_size=16, data_dir=tmp_path, augment=False)
    assert not plain.augment and not torch.equal(x1, torch.cat([x for x, _ in plain]))


def test_an_image_dataset_also_works_with_a_standard_dataloader(tmp_path):
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", cifar_batches(n=3))
    train = load_dataset("cifar10", "train", data_dir=tmp_path)
    x, y = next(iter(torch.utils.data.DataLoader(train, batch_size=5)))
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    test = load_dataset("cifar10", "test", data_dir=tmp_path)
    torch.testing.assert_close(test[-1][0], test.normalise(test.images[-1:])[0])
    with pytest.raises(IndexError):
        test[3]


def test_names_are_forgiving_and_unknown_ones_list_the_valid():
    for name in ("Fashion_MNIST", "fashionmnist", "FashionMNIST", "fashion-mnist"):
        assert resolve_name(name) == "fashion-mnist"
        assert name in DATASETS and DATASETS[name].name == "fashion-mnist"
    assert resolve_name("CIFAR-10") == "cifar10" and DATASETS["cifar_100"].num_classes == 100
    assert list(DATASETS) == ["fashion-mnist", "mnist", "cifar10", "cifar100"]
    assert "imagenet" not in DATASETS and DATASETS.get("imagenet") is None
    with pytest.raises(InputError, match="valid: fashion-mnist, mnist, cifar10, cifar100"):
        resolve_name("imagenet")
    with pytest.raises(InputError, match="'imagenet' is unknown"):
        make_loaders("imagenet")
    info = DATASETS["cifar10"]
    assert (info.in_channels, info.image_size, info.num_classes) == (3, 32, 10)
    assert info.mean == (0.4914, 0.4822, 0.4465) and DATASETS["mnist"].std == (0.3081,)


# ------------------------------------------------------------------ downloads on loopback
class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/cut/"):  # announces 100000 bytes, sends 1000, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_the_checksum_and_keeps_nothing_on_failure(tmp_path, server):
    root, url = server
    (root / "good.gz").write_bytes(gzip.compress(b"payload"))
    good = RemoteFile("good.gz", url + "good.gz", sha256_of(root / "good.gz"))
    path = download(good, tmp_path / "dl", progress=False)
    assert path.read_bytes() == (root / "good.gz").read_bytes()
    bad = RemoteFile("bad.gz", url + "good.gz", "0" * 64)
    with pytest.raises(InputError, match="bad.gz failed, nothing was kept.*failed its checksum"):
        download(bad, tmp_path / "dl")
    missing = RemoteFile("gone.gz", url + "gone.gz", "0" * 64)
    with pytest.raises(InputError, match="download of gone.gz failed.*404"):
        download(missing, tmp_path / "dl")
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["good.gz"]


def test_an_interrupted_download_leaves_no_file(tmp_path, server, monkeypatch):
    root, url = server
    cut = RemoteFile("cut.gz", url + "cut/cut.gz", "0" * 64)
    with pytest.raises(InputError, match="download of cut.gz failed"):
        download(cut, tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []

    class Response:  # a connection that dies with Ctrl-C after the first block
        headers = {"Content-Length": "3000000"}

        def __init__(self):
            self.blocks = 0

        def read(self, n):
            self.blocks += 1
            if self.blocks > 1:
                raise KeyboardInterrupt
            return b"y" * n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: Response())
    with pytest.raises(KeyboardInterrupt):
        download(RemoteFile("ctrl-c.gz", url + "x", "0" * 64), tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == []


def test_mirrors_are_tried_in_turn(tmp_path, server):
    root, url = server
    (root / "f.gz").write_bytes(b"content")
    remote = RemoteFile("f.gz", url + "missing/f.gz", sha256_of(root / "f.gz"),
                        mirrors=(url + "f.gz",))
    assert download(remote, tmp_path / "dl").read_bytes() == b"content"


def _served(info, root: Path, url: str):
    files = tuple(RemoteFile(f.name, url + f.name, sha256_of(root / f.name)) for f in info.files)
    return info.__class__(**{**info.__dict__, "files": files})


def test_a_missing_data_set_is_downloaded_into_the_cache(tmp_path, server, monkeypatch):
    root, url = server
    make_idx_set(root)
    monkeypatch.setitem(DATASETS, "mnist", _served(DATASETS["mnist"], root, url))
    ds = load_dataset("mnist", "test")
    assert len(ds) == 5 and ds.files[0].parent == tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(
        s + ".gz" for s in IDX_STEMS)
    (root / "train-images-idx3-ubyte.gz").unlink()  # now found in the cache: no download
    assert len(load_dataset("mnist", "train")) == 12


def test_a_download_with_a_wrong_checksum_says_how_to_provide_the_data(tmp_path, server,
                                                                      monkeypatch):
    root, url = server
    write_cifar_tar(root / "cifar-10-python.tar.gz", cifar_batches())
    info = DATASETS["cifar10"]
    wrong = (RemoteFile(info.files[0].name, url + info.files[0].name, "f" * 64),)
    monkeypatch.setitem(DATASETS, "cifar10", info.__class__(**{**info.__dict__, "files": wrong}))
    with pytest.raises(InputError, match=r"failed its checksum.*three ways.*--data-dir"):
        load_dataset("cifar10", "test")
    assert not (tmp_path / "cache" / "cifar10" / "cifar-10-python.tar.gz").exists()
    assert [p.name for p in (tmp_path / "cache" / "cifar10").iterdir()] == []


# ------------------------------------------------------------------ the real Fashion-MNIST
@needs_fashion
def test_the_real_fashion_mnist_has_the_official_counts_and_pinned_contents():
    pins = {f.name: f.raw_sha256 for f in DATASETS["fashion-mnist"].files}
    for name, raw in pins.items():
        assert hashlib.sha256(gzip.decompress((DEBIAN / name).read_bytes())).hexdigest() == raw
    train, test, info = make_loaders("fashion-mnist")
    assert (len(train.dataset), len(test.dataset)) == (60000, 10000)
    assert sorted(train.dataset.labels.unique().tolist()) == list(range(info.num_classes)) == \
        list(range(10))
    assert torch.bincount(test.dataset.labels).tolist() == [1000] * 10
    assert train.dataset.images.shape[1:] == (1, 28, 28)
    assert dataset_checksum("fashion-mnist") == official_checksum("fashion-mnist")
    x = train.dataset.normalise(train.dataset.images)
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1) < 0.01  # pinned mean/std
    t0 = time.perf_counter()
    n = sum(len(y) for _, y in train)  # a whole epoch of batches, as a training loop sees it
    assert n == 60000 and time.perf_counter() - t0 < 10
