"""Tensorization: MPO / Tucker / CP / ADTN layers, apply(), spec validation, checkpoints, CLI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from corranalysis.errors import InputError
from corranalysis.tensorize import (
    ADTN,
    CPConv2d,
    MPOConv2d,
    MPOLinear,
    TuckerConv2d,
    apply,
    load,
    load_spec,
    save,
    validate_spec,
)
from corranalysis.tensorize.adtn import adtn_params, apply_gate
from corranalysis.tensorize.cp import max_cp_rank
from corranalysis.tensorize.mpo import balanced_factors, bond_list


class Tiny(nn.Module):
    """conv(3→6) · conv(6→8, stride 2) · linear(8·4·4 → 12) · linear(12 → 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(128, 12), nn.ReLU(),
                                        nn.Linear(12, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@pytest.fixture
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return Tiny().eval()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------------- exact at full rank


def test_mpo_linear_full_rank_matches_dense() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(24, 30)
    fin, fout = [2, 3, 4], [5, 3, 2]
    mpo, err = MPOLinear.from_dense(lin.weight, lin.bias, fin, fout,
                                    bond_list(10**6, fout, fin))
    xin = torch.randn(7, 24)
    assert err < 1e-10
    torch.testing.assert_close(mpo(xin), lin(xin), atol=1e-5, rtol=0)


def test_mpo_conv_full_rank_matches_dense() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1)
    of, inf = MPOConv2d.site_factors([3, 2], [2, 4], (3, 3))
    mod = MPOConv2d([3, 2], [2, 4], bond_list(10**6, of, inf), (3, 3), (2, 2), (1, 1))
    assert mod.load_dense(conv.weight, conv.bias) < 1e-10
    xin = torch.randn(2, 6, 9, 9)
    torch.testing.assert_close(mod(xin), conv(xin), atol=1e-5, rtol=0)


def test_tucker_and_cp_full_rank_match_dense() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1)
    xin = torch.randn(2, 6, 9, 9)
    tucker = TuckerConv2d(6, 8, 6, 8, (3, 3), (2, 2), (1, 1))
    assert tucker.load_dense(conv.weight, conv.bias) < 1e-10
    torch.testing.assert_close(tucker(xin), conv(xin), atol=1e-5, rtol=0)
    cp = CPConv2d(6, 8, max_cp_rank((8, 6, 3, 3)), (3, 3), (2, 2), (1, 1))
    assert cp.load_dense(conv.weight, conv.bias) < 1e-10
    torch.testing.assert_close(cp(xin), conv(xin), atol=1e-5, rtol=0)


def test_error_decreases_with_rank() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, 3)
    mpo_err, tucker_err, cp_err = [], [], []
    of, inf = MPOConv2d.site_factors([3, 2], [2, 4], (3, 3))
    for r in (1, 2, 4, 8):
        m = MPOConv2d([3, 2], [2, 4], bond_list(r, of, inf), (3, 3))
        mpo_err.append(m.load_dense(conv.weight, None))
        t = TuckerConv2d(6, 8, min(r, 6), r, (3, 3))
        tucker_err.append(t.load_dense(conv.weight, None))
        c = CPConv2d(6, 8, 2 * r, (3, 3))
        cp_err.append(c.load_dense(conv.weight, None))
    for errs in (mpo_err, tucker_err, cp_err):
        assert all(a > b for a, b in zip(errs, errs[1:], strict=False)), errs


def test_mpo_forward_never_builds_dense(tiny: nn.Module, x: torch.Tensor) -> None:
    """The cores are the only parameters and gradients reach every core."""
    new, _ = apply(tiny, {"classifier.1": {"method": "mpo", "bond_dim": 2}})
    new(x).sum().backward()
    mod = new.classifier[1]
    assert isinstance(mod, MPOLinear)
    assert all(c.grad is not None and c.grad.abs().sum() > 0 for c in mod.cores)


def test_balanced_factors() -> None:
    assert balanced_factors(4096, 3) == [16, 16, 16]
    assert balanced_factors(10, 3) == [5, 2, 1]


# ------------------------------------------------------------------------------------ ADTN


def test_adtn_gate_matches_kron() -> None:
    q, site = 5, 2
    v, g = torch.randn(2**q, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    full = torch.kron(torch.kron(torch.eye(2**site, dtype=torch.float64), g),
                      torch.eye(2 ** (q - site - 2), dtype=torch.float64))
    torch.testing.assert_close(apply_gate(v, g, site, q), full @ v)
    gv = v.clone().requires_grad_()
    gg = g.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: apply_gate(a, b, site, q), (gv, gg))


def test_adtn_params_and_shape() -> None:
    for n, depth in ((1000, 1), (5000, 3)):
        a = ADTN(n, depth)
        q = a.qubits
        assert 2 ** (q - 1) < n <= 2**q
        assert sum(p.numel() for p in a.parameters()) == adtn_params(depth, q) == (
            4 * (q // 2) + 16 * ((q - 1) // 2) + 16 * (depth - 1) * (q - 1))
        assert a.weights().shape == (n,)
    with pytest.raises(InputError, match="depth"):
        ADTN(100, 0)


def test_adtn_fit_reduces_error() -> None:
    torch.manual_seed(0)
    a = ADTN(256, 2)
    target = torch.linspace(-1, 1, 256)
    with torch.no_grad():
        start = float((a.generate()[:256] * target.norm() / 16 - target).norm() / target.norm())
    assert a.fit(target, steps=60, lr=0.05) < min(start, 0.9)
    b = ADTN(256, 2, seed=3)
    assert b.fit(target, steps=0) <= 1.0  # least-squares scale alone
    assert b.fit(target, steps=3, lr=10.0) <= b.fit(target, steps=0) + 1e-6  # best iterate kept


def test_shared_adtn_and_rebuild_once_per_step(tiny: nn.Module, x: torch.Tensor) -> None:
    spec = {"classifier.1": {"method": "adtn", "share": "head", "fit_steps": 0},
            "classifier.3": {"method": "adtn", "share": "head", "fit_steps": 0}}
    new, table = apply(tiny, spec)
    a1, a3 = new.classifier[1].adtn, new.classifier[3].adtn
    assert a1 is a3 and a1.n_weights == 128 * 12 + 12 * 5
    assert table["params_after"].sum() == adtn_params(2, a1.qubits) + 12 + 5
    new.train()
    opt = torch.optim.Adam(new.parameters(), lr=1e-3)
    a1.n_builds = 0
    for _ in range(3):
        opt.zero_grad()
        new(x).pow(2).mean().backward()  # both layers read the one generated vector
        opt.step()
    assert a1.n_builds == 3
    # gradient accumulation: two backwards in one step rebuild (graph freed), no error
    opt.zero_grad()
    new(x).sum().backward()
    new(x).sum().backward()
    assert a1.n_builds == 5
    new.eval()
    with torch.no_grad():
        before = a1.n_builds
        y1, y2 = new(x), new(x)
    assert a1.n_builds == before + 1
    torch.testing.assert_close(y1, y2)


# ----------------------------------------------------------------------- apply and spec


def test_apply_table_and_copy(tiny: nn.Module, x: torch.Tensor) -> None:
    spec = {"features.*": {"method": "tucker", "rank": 1.0},
            "classifier.1": {"method": "mpo", "bond_dim": 1.0, "sites": 2},
            "classifier.3": {"method": "adtn", "depth": 1, "fit_steps": 5}}
    new, table = apply(tiny, spec)
    assert list(table["layer"]) == ["features.0", "features.2", "classifier.1", "classifier.3"]
    assert {"params_before", "params_after", "compression", "init_rel_error"} <= set(table)
    assert (table.loc[table.method != "adtn", "init_rel_error"] < 1e-10).all()
    assert isinstance(tiny.features[0], nn.Conv2d)  # the original is untouched
    assert isinstance(new.features[0], TuckerConv2d)
    new2, _ = apply(tiny, {"features.2": {"method": "cp", "rank": 1.0},
                           "classifier.1": {"method": "mpo", "bond_dim": 1.0}})
    torch.testing.assert_close(new2(x), tiny(x), atol=1e-5, rtol=0)


def test_compression_target(tiny: nn.Module) -> None:
    for method in ("mpo", "tucker", "cp"):
        _, table = apply(tiny, {"features.2": {"method": method, "compression": 2}})
        assert table.compression[0] >= 2


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"features.0": {"method": "tucker", "rank": 99}}, "larger than the layer allows"),
        ({"features.2": {"method": "cp", "rank": 10**5}}, "larger than the layer allows"),
        ({"classifier.1": {"method": "mpo", "bond_dim": 10**5}}, "larger than the layer allows"),
        ({"classifier.1": {"method": "adtn", "depth": 0}}, "depth"),
        ({"nothing.*": {"method": "cp", "rank": 2}}, "matches no layer"),
        ({"features.1": {"method": "cp", "rank": 2}}, "ReLU"),
        ({"classifier.1": {"method": "tucker", "rank": 2}}, "methods for Linear: svd, mpo, adtn"),
        ({"classifier.1": {"method": "mpo", "bond_dim": 2,
                           "factors": {"in": [4, 4, 4], "out": [3, 2, 1]}}}, "multiply to 64"),
        ({"classifier.1": {"method": "tt"}}, "unknown"),
        ({"classifier.1": {"method": "svd"}}, "exactly one of rank or compression"),
        ({"classifier.1": {"method": "mpo", "bond_dim": 2, "bogus": 1}}, "unknown setting"),
        ({"classifier.1": {"method": "mpo"}}, "exactly one of bond_dim or compression"),
        ({"features.2": {"method": "cp", "compression": 10**6}}, "cannot reach compression"),
    ],
)
def test_bad_specs(tiny: nn.Module, spec: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        apply(tiny, spec)


def test_load_spec(tmp_path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text('"features.*": {method: tucker, rank: 0.5}\nclassifier.1: {method: adtn}\n')
    spec = load_spec(path)
    assert spec["classifier.1"]["depth"] == 2 and spec["features.*"]["rank"] == 0.5
    path.write_text("[1, 2]\n")
    with pytest.raises(InputError, match="spec"):
        load_spec(path)
    with pytest.raises(InputError):
        validate_spec({"a": {"method": "adtn", "depth": 1.5}})


def test_checkpoint_reload_identical(tiny: nn.Module, x: torch.Tensor, tmp_path) -> None:
    spec = {"features.0": {"method": "cp", "rank": 3},
            "features.2": {"method": "mpo", "bond_dim": 0.5},
            "classifier.*": {"method": "adtn", "share": "g", "fit_steps": 3}}
    new, _ = apply(tiny, spec)
    new.eval()
    path = save(tmp_path / "t.pt", new, spec)
    again, spec2 = load(path, base=Tiny())
    again.eval()
    torch.testing.assert_close(again(x), new(x), atol=0, rtol=0)
    assert again.classifier[1].adtn is again.classifier[3].adtn
    assert spec2["features.0"]["method"] == "cp"


# ------------------------------------------------------------------------------------- CLI


def _cli(args: list[str]) -> int:
    from corranalysis.cli import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    return int(exc.value.code or 0)


@pytest.mark.parametrize(
    "spec_text",
    ["classifier.1: {method: adtn, depth: 0}\n", "classifier.1: {method: nope}\n", "[1]\n"],
)
def test_cli_bad_spec_exit_2_nothing_written(tmp_path, spec_text: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    ckpt = tmp_path / "model.pt"
    torch.save(Tiny().state_dict(), ckpt)
    out = tmp_path / "out"
    code = _cli(["tensorize", str(ckpt), "--model", "fc2", "--dataset", "fashion_mnist",
                 "--spec", str(spec), "--epochs", "1", "--out", str(out)])
    assert code == 2
    assert not out.exists()


def _tiny_loaders(name: str, **kwargs):
    """Random 1×28×28 images in place of a data set (the CLI path without file reading)."""
    from types import SimpleNamespace

    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(48, 1, 28, 28, generator=g),
                         torch.randint(0, 10, (48,), generator=g))
    info = SimpleNamespace(in_channels=1, num_classes=10, image_size=28)
    return DataLoader(data, batch_size=16), DataLoader(data, batch_size=48), info


def test_cli_run_and_reload(tmp_path, monkeypatch) -> None:
    """End to end through the CLI (tiny random data set standing in for Fashion-MNIST)."""
    data = pytest.importorskip("corranalysis.data")
    monkeypatch.setattr(data, "make_loaders", _tiny_loaders)
    from corranalysis.io import read_netcdf
    from corranalysis.models import create

    torch.manual_seed(0)
    ckpt = tmp_path / "fc2.pt"
    torch.save(create("fc2", 1, 10).state_dict(), ckpt)
    spec = tmp_path / "spec.yaml"
    spec.write_text("classifier.1: {method: mpo, bond_dim: 4}\n"
                    "classifier.3: {method: adtn, depth: 1, fit_steps: 2}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("classifier.9: {method: mpo, bond_dim: 4}\n")
    args = ["tensorize", str(ckpt), "--model", "fc2", "--dataset", "fashion-mnist",
            "--epochs", "1", "--device", "cpu"]
    assert _cli([*args, "--spec", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "out"
    assert _cli([*args, "--spec", str(spec), "--out", str(out)]) == 0
    ds = read_netcdf(out / "tensorize.nc")
    assert ds.sizes == {"layer": 2, "epoch": 2}
    assert {"accuracy", "params_before", "params_after", "compression", "init_rel_error",
            "method"} <= set(ds.variables)
    assert "baseline_accuracy" in ds.attrs and "git_commit" in ds.attrs
    model, _ = load(out / "tensorized.pt")
    assert isinstance(model.classifier[1], MPOLinear)
