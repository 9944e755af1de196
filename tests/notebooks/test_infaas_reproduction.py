"""notebooks/infaas_reproduction.ipynb, executed (nbclient) on a short sweep built in-process:
it must read the job folders alone and draw every figure of every scenario."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from nbclient import NotebookClient
from omegaconf import OmegaConf

from infaas_sim.experiment import run_experiment
from experiments.outputs import write_run
from experiments.comparison import FIGURES, comparison_table, load_jobs

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "infaas_reproduction.ipynb"
ARMS = ("infaas", "static_peak", "hpa")


@pytest.fixture(scope="module")
def short_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep folder laid out as Hydra's multirun writes it (job folders with
    .hydra/overrides.yaml), three arms on 40 s of the low scenario."""
    sweep = tmp_path_factory.mktemp("sweep")
    for n, arm in enumerate(ARMS):
        overrides = ["+scenario=low", f"+arm={arm}", "run.duration_s=40", "run.drain_s=10", "run.progress=false"]
        with initialize_config_dir(config_dir=str(ROOT / "experiments" / "conf"), version_base=None):
            cfg = OmegaConf.to_container(compose("config", overrides=overrides), resolve=False)
        assert isinstance(cfg, dict)
        cfg.pop("hydra", None)
        job = sweep / f"{n}_{arm}"
        write_run(run_experiment({str(k): v for k, v in cfg.items()}), job, figures=False)
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return sweep


def test_notebook_builds_every_figure_from_the_sweep(short_sweep: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    out = tmp_path / "figs"
    monkeypatch.setenv("INFAAS_SWEEP_DIR", str(short_sweep))
    monkeypatch.setenv("INFAAS_NOTEBOOK_OUT", str(out))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    where = {"metadata": {"path": str(ROOT / "notebooks")}}  # the kernel runs from notebooks/, as in Jupyter
    NotebookClient(nb, timeout=120, kernel_name="python3", resources=where).execute()
    for name in FIGURES:
        assert (out / f"low_{name}.png").stat().st_size > 10_000, name
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]  # fmt: skip
    assert len(images) == len(FIGURES)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    table = pd.read_csv(out / "table_low.csv", index_col="arm")
    expected = comparison_table(load_jobs(short_sweep), "low")
    assert list(table.index) == list(ARMS)
    assert table["total_cost"].to_numpy() == pytest.approx(expected["total_cost"].astype(float).to_numpy())


def test_the_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
