"""``neurodeploy demo`` end to end on a few samples: every step runs for real (compile, verify
with Lava, hw_sim dataset run, report with the ANN comparison, SAM, FGSM) and lands in one
folder with one report; bad options exit 2 and leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurodeploy.demo import DEMO_FILES, run_demo, summary_lines
from neurodeploy.errors import NeurodeployError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, lava: object) -> tuple[Path, dict]:
    import torch

    out = tmp_path_factory.mktemp("demo") / "demo-out"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        doc = run_demo(out, samples=24, verify_samples=8, lava_samples=1, sam_samples=2,
                       attack_samples=16, eps=0.1, progress=False)
    finally:
        torch.set_num_threads(before)
    return out, doc


@pytest.mark.lava
def test_demo_writes_one_report_with_every_part(demo: tuple[Path, dict]) -> None:
    out, doc = demo
    assert sorted(p.name for p in out.iterdir()) == sorted(DEMO_FILES)
    report = json.loads((out / "report.json").read_text())
    assert report == doc
    assert report["target"] == "loihi2" and report["samples"] == 24
    assert report["verification"]["ok"] is True
    assert report["verification"]["stages"]["lava"]["status"] == "ran"
    assert report["energy"]["per_inference_j"]["total"] > 0
    assert report["ann_comparison"]["accuracy"]["ann"] is not None
    assert {r["layer"] for r in report["sam"]["layers"]} == {"lif1", "lif2"}
    rob = report["robustness"]
    assert rob["attack"] == "fgsm" and rob["eps"] == [0.0, 0.1]
    assert set(rob["accuracy"]) >= {"ann", "snn_float", "snn_deployed"}
    html = (out / "report.html").read_text()
    for section in ("verification", "sam", "robustness", "energy", "ann"):
        assert f'<section id="{section}">' in html
    steps = json.loads((out / "demo.json").read_text())["steps"]
    assert len(steps) == 6 and all(s["seconds"] >= 0 for s in steps)
    text = "\n".join(summary_lines(doc))
    assert "FGSM eps 0.1" in text and "bit for bit" in text


def test_demo_replaces_its_own_output_only(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(NeurodeployError, match="did not write"):
        run_demo(foreign, samples=4)
    assert (foreign / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("kwargs, words", [({"samples": 0}, "samples"),
                                           ({"eps": 0.0}, "eps"), ({"eps": 2.0}, "eps"),
                                           ({"lava_samples": 0}, "lava_samples")])
def test_demo_bad_options(tmp_path: Path, kwargs: dict, words: str) -> None:
    with pytest.raises(NeurodeployError, match=words):
        run_demo(tmp_path / "d", **kwargs)
    assert not (tmp_path / "d").exists()


def test_demo_cli_bad_option_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from neurodeploy.cli import main

    assert main(["demo", "--out", str(tmp_path / "d"), "--eps", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eps" in err[0]
    assert not (tmp_path / "d").exists()
