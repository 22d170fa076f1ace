"""Jupyter: a finished run as one DataTree with the report's figures (``ca.open_run``), and
notebook 04 (your own model file on your own image folder) executed on generated files."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402
import yaml  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from test_report import STEMS, make_run  # noqa: E402
from test_user_data import make_shapes  # noqa: E402

import corranalysis as ca  # noqa: E402
from corranalysis.models import create  # noqa: E402
from corranalysis.pipeline import RUN_DATASETS, load_run  # noqa: E402
from corranalysis.report.figures import figure_makers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04_your_own_model.ipynb"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A small real run (tiny CNN: spectra, sweep, linkage, recovery, tensorize). Read-only."""
    return make_run(tmp_path_factory.mktemp("open") / "demo", compare=False)


def _copy(run: Path, dest: Path, files: tuple[str, ...] | None = None) -> Path:
    dest.mkdir()
    for path in run.iterdir():
        if files is None or path.name in files:
            shutil.copy(path, dest / path.name)
    return dest


# --------------------------------------------------------------------------- open_run
def test_a_run_opens_as_one_tree_with_a_node_per_dataset_and_its_records_on_the_root(run_dir):
    tree = ca.open_run(run_dir)
    run = load_run(run_dir)
    assert list(tree.children) == list(run.datasets) == [
        "spectra", "sweep", "linkage", "recovery", "tensorize"]
    assert set(tree.children) <= set(RUN_DATASETS)
    for name, ds in run.datasets.items():
        xr.testing.assert_identical(tree[name].to_dataset(), ds)
    assert tree.name == tree.attrs["name"] == "demo" and tree.attrs["run_dir"] == str(run_dir)
    assert json.loads(tree.attrs["config"]) == tree.ca.config == yaml.safe_load(
        (run_dir / "config.yaml").read_text())
    assert tree.ca.record == json.loads((run_dir / "run.json").read_text())
    assert list(tree.ca.stages) == ["train", "spectra", "sweep", "linkage", "retrain"]
    assert tree["sweep"].attrs["baseline_accuracy"] == tree.ca.record["test_accuracy"]


def test_every_report_figure_is_drawn_from_the_tree_and_not_kept_by_pyplot(run_dir):
    tree = ca.open_run(run_dir)
    assert tree.ca.figures() == list(figure_makers(load_run(run_dir).datasets)) == list(STEMS)
    before = plt.get_fignums()
    for name in tree.ca.figures():
        fig = tree.ca.figure(name)
        assert isinstance(fig, Figure) and fig.axes, name
    assert plt.get_fignums() == before  # shown once in Jupyter (by its repr), then freed
    narrow = tree.ca.figure("spectra", width=3.4, layers=["0"])
    assert narrow.get_figwidth() == pytest.approx(3.4)
    assert [ax.get_title().split("\n")[0] for ax in narrow.axes if ax.get_title()] == ["layer 0"]
    with pytest.raises(ca.InputError, match=r"figure 'training' is not available; valid: "
                                            r"spectra, entropy, .*tensorize \(datasets in the "
                                            r"tree: spectra, sweep, linkage, recovery, "
                                            r"tensorize\)"):
        tree.ca.figure("training")


def test_the_tree_saved_as_netcdf_reopens_with_its_records_and_figures(run_dir, tmp_path):
    tree = ca.open_run(run_dir)
    tree.to_netcdf(tmp_path / "demo.nc", engine="h5netcdf")
    with xr.open_datatree(tmp_path / "demo.nc", engine="h5netcdf") as back:
        assert back.ca.config == tree.ca.config and back.ca.record == tree.ca.record
        assert back.ca.figures() == tree.ca.figures()
        xr.testing.assert_equal(back["spectra"]["entropy"], tree["spectra"]["entropy"])


def test_a_run_in_progress_opens_with_what_it_has(run_dir, tmp_path):
    early = _copy(run_dir, tmp_path / "early", ("config.yaml", "run.json", "spectra.nc"))
    tree = ca.open_run(early)
    assert list(tree.children) == ["spectra"]
    assert tree.ca.figures() == ["spectra", "entropy", "norm_loss"]
    with pytest.raises(ca.InputError, match="sweep.nc is missing in .*--force sweep"):
        ca.open_run(early, required=["sweep"])
    own = xr.DataTree.from_dict({"spectra": tree["spectra"].to_dataset()})  # any such tree
    assert own.ca.figures() == tree.ca.figures() and own.ca.config == {}
    bare = _copy(run_dir, tmp_path / "bare", ("config.yaml", "run.json"))
    assert len(ca.open_run(bare).children) == 0 and ca.open_run(bare).ca.figures() == []


def test_a_folder_that_is_not_a_run_or_a_damaged_file_gets_the_error_of_load_run(run_dir,
                                                                                  tmp_path):
    with pytest.raises(ca.InputError, match="does not exist; give a directory written by"):
        ca.open_run(tmp_path / "nowhere")
    with pytest.raises(ca.InputError, match=r"is not a run directory \(no config.yaml / "
                                            r"run.json\)"):
        ca.open_run(tmp_path)
    damaged = _copy(run_dir, tmp_path / "damaged")
    (damaged / "linkage.nc").write_bytes(b"not netCDF")
    with pytest.raises(ca.InputError, match=r"linkage.nc' cannot be read.*--force linkage"):
        ca.open_run(damaged)


# --------------------------------------------------------------------------- notebook 04
@pytest.fixture(scope="module")
def own_files(tmp_path_factory) -> dict[str, Path]:
    """360 generated 16×16 grey shapes in 3 class folders; a cnn4 trained one epoch on them,
    saved as a bare .pt (no run.json beside it) and exported to .onnx."""
    tmp = tmp_path_factory.mktemp("own")
    images = make_shapes(tmp / "shapes", per_class=120)
    ca.train("cnn4", f"imagefolder:{images}", epochs=1, out=tmp / "train", batch_size=8,
             device="cpu", progress=False)
    pt = tmp / "model" / "my_model.pt"
    pt.parent.mkdir()
    shutil.copy(tmp / "train" / "model.pt", pt)
    model = create("cnn4", 1, 3, image_size=16)
    model.load_state_dict(torch.load(pt, weights_only=True))
    onnx = pt.with_suffix(".onnx")
    with warnings.catch_warnings():  # the TorchScript exporter works offline
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model.eval(), (torch.zeros(1, 1, 16, 16),), str(onnx), dynamo=False,
                          input_names=["x"], output_names=["y"])
    return {"images": images, "pt": pt, "onnx": onnx, "out": tmp / "out"}


def test_notebook_04_shows_an_onnx_files_spectra_and_sweeps_it_on_an_image_folder(
        own_files, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "notebooks are committed without outputs"
    assert [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    data = f"imagefolder:{own_files['images']}"
    for var, value in {"CORRANALYSIS_MODEL_FILE": own_files["onnx"], "CORRANALYSIS_MODEL": "cnn4",
                       "CORRANALYSIS_DATASET": data, "CORRANALYSIS_OUT": own_files["out"]}.items():
        monkeypatch.setenv(var, str(value))
    NotebookClient(nb, timeout=120, kernel_name="corranalysis",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    shown = [c for c in nb.cells if c.cell_type == "code"
             and ("draw" in c.source or "spectra_figure" in c.source)]
    pngs = [sum("image/png" in o.get("data", {}) for o in c.outputs) for c in shown]
    assert pngs == [1, 0, 1, 1], pngs  # each figure shows once ('list(draw)' names them)

    # the ONNX file's spectra are those of the .pt it was exported from; the sweep ran the
    # ONNX weights in cnn4 on the folder's held-out fifth
    out = own_files["out"]
    spectra = ca.load(out / "spectra.nc")
    expected = ca.compute_spectra(ca.extract_kernels(own_files["pt"]), device="cpu")
    xr.testing.assert_equal(spectra.drop_attrs(), expected.drop_attrs())
    sw = ca.load(out / "sweep.nc")
    trained = ca.load_trained(own_files["pt"], "cnn4", data, device="cpu")
    assert sw.attrs["baseline_accuracy"] == ca.evaluate(trained.model, trained.test).accuracy
    assert sw.attrs["n_test"] == 72 and set(sw["layer"].values) == set(spectra["layer"].values)
    assert "tolerated_norm_loss" in ca.load(out / "linkage.nc")
