"""Write the notebooks (without outputs) from the cells below.

Run ``python notebooks/make_notebooks.py`` after editing a cell; a notebook whose cells did
not change is left as it is. A ``"parameters"`` cell is a code cell tagged ``parameters``
(papermill's convention: ``papermill -p NAME VALUE`` overrides it).
"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent

SETUP = """\
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import corranalysis as ca

# run from the repository root; the quick study's run directory holds a trained checkpoint
if Path.cwd().name == "notebooks":
    os.chdir(Path.cwd().parent)
CONFIG = os.environ.get("CORRANALYSIS_CONFIG", "configs/quick.yaml")
config = ca.load_config(CONFIG)
RUN = config.run_dir
if not (RUN / "model.pt").exists():
    ca.run_study(config, only=["train"])
print("run directory:", RUN)"""

SETUP_OWN = """\
import os
from pathlib import Path

import corranalysis as ca
from corranalysis.report import figures

%matplotlib inline
# relative paths are taken from the repository root
if Path.cwd().name == "notebooks":
    os.chdir(Path.cwd().parent)"""

PARAMETERS_OWN = """\
# edit these, or set the environment variables (papermill: -p NAME VALUE)
MODEL_FILE = os.environ.get("CORRANALYSIS_MODEL_FILE", "my_model.pt")  # .pt .safetensors .npz .onnx
MODEL = os.environ.get("CORRANALYSIS_MODEL", "cnn4")  # zoo name or package.module:factory
DATA = os.environ.get("CORRANALYSIS_DATASET", "imagefolder:photos/")  # a sub-folder per class
OUT = Path(os.environ.get("CORRANALYSIS_OUT", "reports/my_model"))  # results are saved here
KEEPS = "frac=0.5,frac=0.25,frac=0.1"  # fractions of each cut's singular values kept
TEST_SIZE = 1000  # held-out images per trial at most (None: all)
DEVICE = "auto"  # CUDA when present, else the CPU"""

NOTEBOOKS = {
    "01_spectra.ipynb": [
        ("md", "# Spectra of a trained model's kernels\n\nLoad a checkpoint, view every "
               "kernel as a tensor with named legs, and compute the singular-value spectrum "
               "across every cut. Everything is an xarray object."),
        ("code", SETUP),
        ("code", "kernels = ca.extract_kernels(RUN / 'model.pt')\nkernels"),
        ("code", "spectra = ca.compute_spectra(kernels, legs='natural', cuts='all')\n"
                 "spectra"),
        ("md", "Entropy (nats) per layer and cut; NaN where a cut does not exist "
               "(a Linear has only `out|in`)."),
        ("code", "spectra['entropy'].to_pandas().round(3)"),
        ("code", "layer = str(spectra.layer.values[0])\n"
                 "ax = spectra['singular_values'].sel(layer=layer).plot.line(x='k', hue='cut', "
                 "yscale='log')\nplt.title(f'layer {layer}')\nplt.show()"),
        ("md", "How much of each cut's rank is effectively used:"),
        ("code", "(spectra['effective_rank'] / spectra['chi_max']).to_pandas().round(3)"),
        ("md", "Fine-grained legs expose more cuts; the contiguous ones are the bonds of the "
               "kernel's quimb MPS."),
        ("code", "fine = ca.compute_spectra(kernels, legs='binary', cuts='contiguous')\n"
                 "fine['entropy'].sel(layer=layer).dropna('cut').to_pandas()"),
        ("code", "w = kernels[layer]['weight'].values\n"
                 "layout = ca.fine_grain(list(kernels[layer]['weight'].dims), w.shape, "
                 "'binary')\nmps = ca.kernel_mps(w, layout)\n"
                 "bonds = ca.bond_spectra(mps)\n"
                 "row = fine['singular_values'].sel(layer=layer).dropna('cut', how='all')\n"
                 "for j, s in enumerate(bonds):\n"
                 "    ref = row.isel(cut=j).dropna('k').values\n"
                 "    assert np.allclose(s[: len(ref)], ref, rtol=1e-8, atol=1e-12)\n"
                 "print(len(bonds), 'MPS bond spectra agree with the contiguous cuts')"),
        ("code", "ca.save(spectra, RUN / 'spectra_notebook.nc')\n"
                 "ca.load(RUN / 'spectra_notebook.nc').identical(spectra)"),
    ],
    "02_truncation_vs_accuracy.ipynb": [
        ("md", "# Truncation versus accuracy\n\nTruncate one layer's kernel along each cut, "
               "keeping fewer and fewer singular values, and measure test accuracy on real "
               "Fashion-MNIST images."),
        ("code", SETUP),
        ("code", "from corranalysis.kernels import load_into\n"
                 "from corranalysis.data import make_loaders\n"
                 "from corranalysis.models import create\n\n"
                 "_, test_loader, info = make_loaders(config.dataset, test_size=300, "
                 "eval_batch_size=300, seed=0)\n"
                 "model = create(config.model, info.in_channels, info.num_classes)\n"
                 "load_into(model, RUN / 'model.pt')\nmodel.eval();"),
        ("code", "w = model.features[3].weight\n"
                 "t = ca.truncate(w, 'out,kh|in,kw', 'frac=0.25')\n"
                 "t.metrics"),
        ("code", "result = ca.sweep(model, test_loader, layers='features.3', cuts='all',\n"
                 "                  keeps='frac=1.0,frac=0.5,frac=0.25,frac=0.1,frac=0.05',"
                 " device='cpu')\nresult"),
        ("code", "fig, ax = plt.subplots(figsize=(5, 3.5))\n"
                 "for cut in np.unique(result['cuts'].values):\n"
                 "    sel = result.where(result['cuts'] == cut, drop=True).sortby('norm_loss')\n"
                 "    ax.plot(sel['norm_loss'], 100 * sel['accuracy'], marker='o', label=cut)\n"
                 "ax.axhline(100 * result.attrs['baseline_accuracy'], color='k', ls=':', "
                 "label='untruncated')\n"
                 "ax.set_xlabel('norm loss (fraction of ‖W‖²)')\n"
                 "ax.set_ylabel('test accuracy (%)')\nax.legend(fontsize=7)\nplt.show()"),
    ],
    "03_paper_figures.ipynb": [
        ("md", "# Paper figures from a run directory\n\nRun (or reuse) a whole study, then "
               "rebuild every paper figure as vector PDF, at one- and two-column journal "
               "widths."),
        ("code", SETUP.replace('only=["train"]', 'only=None') + "\n"
                 "ca.run_study(config)  # skips every stage already done"),
        ("code", "from corranalysis.report import figures\n\n"
                 "run = ca.load_run(RUN)  # records and datasets of the run directory\n"
                 "paths = ca.build_figures(run, RUN / 'paper')\n"
                 "sorted(p.name for p in paths)"),
        ("code", "sweep, spectra = run.datasets['sweep'], run.datasets['spectra']\n"
                 "fig = figures.accuracy_vs_norm_loss(sweep)\nfig"),
        ("code", "fig = figures.entropy_heatmap(spectra)\nfig"),
        ("code", "fig = figures.recovery_figure(run.datasets['recovery'])\nfig"),
    ],
    "04_your_own_model.ipynb": [
        ("md", "# Your own model on your own data\n\nPoint the parameters at a weight file "
               "(a PyTorch state dict or training checkpoint `.pt`, `.safetensors`, `.npz` or "
               "`.onnx`) and at your images: `imagefolder:PATH`, one sub-folder of PNG/JPEG "
               "images per class (with `PATH/train/` and `PATH/test/` the given split is kept, "
               "else a fixed fifth of each class is held out). The notebook shows the spectra "
               "of every kernel in the file, then truncates each layer along each cut and "
               "measures accuracy on your held-out images."),
        ("code", SETUP_OWN),
        ("parameters", PARAMETERS_OWN),
        ("md", "## Spectra of the file's kernels\n\nThe file alone is enough: its kernels are "
               "read without building or running the model (an ONNX graph is not executed), "
               "in forward order."),
        ("code", "kernels = ca.extract_kernels(MODEL_FILE)\n"
                 "spectra = ca.compute_spectra(kernels, device=DEVICE)\n"
                 "spectra['entropy'].to_pandas().round(3)"),
        ("code", "fig = figures.spectra_figure(spectra)"),
        ("md", "## A small sweep on your images\n\n`load_trained` builds the architecture "
               "`MODEL` sized for your data (channels, classes, image size), loads the file's "
               "weights into it (a file that does not fit is refused, naming what differs) and "
               "gives the held-out images. Each trial truncates one layer along one cut, "
               "keeping a fraction of its singular values, and evaluates the model."),
        ("code", "trained = ca.load_trained(MODEL_FILE, MODEL, DATA, test_size=TEST_SIZE, "
                 "device=DEVICE)\n"
                 "print('classes:', ', '.join(trained.info.classes))\n"
                 "ca.evaluate(trained.model, trained.test)"),
        ("code", "sw = ca.sweep(trained.model, trained.test, cuts='all', keeps=KEEPS, "
                 "device=DEVICE)\nsw"),
        ("md", "Which layers and cuts tolerate the most truncation, and do the spectra "
               "predict it? `link` pairs the sweep with the spectra (with a few hundred "
               "held-out images these numbers are rough). `figure_makers` draws every report "
               "figure these datasets allow, one colour per cut throughout."),
        ("code", "linkage = ca.link(sw, spectra)\n"
                 "draw = figures.figure_makers({'spectra': spectra, 'sweep': sw, "
                 "'linkage': linkage})\n"
                 "list(draw)"),
        ("code", "fig = draw['accuracy_vs_norm_loss']()"),
        ("code", "fig = draw['tolerance']()"),
        ("code", "OUT.mkdir(parents=True, exist_ok=True)\n"
                 "for name, ds in {'spectra': spectra, 'sweep': sw, 'linkage': linkage}.items():\n"
                 "    ca.save(ds, OUT / f'{name}.nc')\n"
                 "sorted(p.name for p in OUT.glob('*.nc'))"),
        ("md", "The command line gives the same files: `corranalysis spectra MODEL_FILE --out "
               "spectra.nc` and `corranalysis sweep MODEL_FILE --model cnn4 --dataset "
               "imagefolder:PATH --out sweep.nc`. A finished study run (`corranalysis run "
               "CONFIG`) opens as one `xarray.DataTree` with `tree = ca.open_run('runs/NAME')`: "
               "a node per dataset, `tree.ca.figures()` lists the report's figures and "
               "`tree.ca.figure(name)` draws one."),
    ],
}


def _cell(kind: str, src: str) -> nbf.NotebookNode:
    if kind == "md":
        return nbf.v4.new_markdown_cell(src)
    cell = nbf.v4.new_code_cell(src)
    if kind == "parameters":
        cell.metadata["tags"] = ["parameters"]
    return cell


def _content(nb: nbf.NotebookNode) -> list[tuple]:
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


def build() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = nbf.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells = [_cell(kind, src) for kind, src in cells]
        path = HERE / name
        if path.is_file() and _content(nbf.read(path, as_version=4)) == _content(nb):
            continue  # unchanged: keep the file (and its cell ids) as it is
        nbf.write(nb, path)


if __name__ == "__main__":
    build()
