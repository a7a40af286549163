"""The end-to-end demo (``neurodeploy demo``, the README's first command): the shipped BNTT CNN
(``models/checkpoints/demo_cnn``, trained on the built-in ``mnist5k``) taken through the whole
pipeline, each step by the same API the single commands use:

1. **compile** for Loihi 2 with calibration on the training split (:func:`compile_model`);
2. **verify** float → quantized → hw_sim → Lava on a few test samples (:func:`verify`);
3. **simulate** the whole ``mnist5k`` test split with hw_sim, counting events per core
   (:func:`neurodeploy.inference.evaluate`), then **energy and latency** on the target and
   the **ANN vs SNN comparison** with the trained ANN twin
   (:func:`neurodeploy.reporting.build_report`);
4. **SAM** heatmaps, float and on-chip, with Grad-CAM (:func:`neurodeploy.sam.run_sam`);
5. an **FGSM** robustness check at one ε on the ANN, the float SNN and the deployed SNN
   (:func:`neurodeploy.attacks.run_attack`).

Everything lands in one folder (default ``demo-out/``), written atomically: ``report.html``
and ``report.json`` (all of the above in one document), ``demo.json`` (what ran, with the time
of each step) and one sub-folder per step (``compiled/``, ``run/``, ``sam/``, ``attack/``,
``verify.json``) holding what the single commands would have written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import NeurodeployError
from .outdir import check_out_dir, jsonable, write_dir_atomic

DEMO_DATA = "mnist5k"
DEMO_TARGET = "loihi2"
DEFAULT_OUT = "demo-out"
#: Files and folders a demo output folder holds (a previous demo may be replaced).
DEMO_FILES = ("compiled", "run", "sam", "attack", "verify.json", "demo.json", "report.json",
              "report.html")
FORMAT = "neurodeploy-demo"


def demo_model() -> Path:
    """The shipped demo checkpoint folder."""
    from .models.checkpoint import DEMO_MODEL

    return DEMO_MODEL


def run_demo(out: str | Path = DEFAULT_OUT, *, samples: int | None = None,
             verify_samples: int = 100, lava_samples: int = 1, sam_samples: int = 4,
             attack_samples: int = 500, eps: float = 0.1, progress: bool = True,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the demo into ``out`` (module docstring) and return the report document.

    Args:
        out: output folder: new, empty, or a previous demo's (replaced only when every
            entry in it is one a demo writes).
        samples: ``mnist5k`` test samples simulated with hw_sim (default: all 1,000).
        verify_samples: samples for the float/quantized/hw_sim verification stages.
        lava_samples: samples also run in Lava (``fixed_pt``); at least 1.
        sam_samples: samples for the Spike Activation Maps.
        attack_samples: samples attacked with FGSM.
        eps: FGSM ε in pixel units ([0, 1] images), ``0 < eps <= 1``.
        progress: progress bars for the long steps.
        log: called with one line per step.
    """
    if samples is not None and samples < 1:
        raise NeurodeployError(f"samples must be >= 1, got {samples}")
    for name, value, low in (("verify_samples", verify_samples, 1),
                             ("lava_samples", lava_samples, 1),
                             ("sam_samples", sam_samples, 1),
                             ("attack_samples", attack_samples, 1)):
        if not isinstance(value, int) or value < low:
            raise NeurodeployError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (isinstance(eps, (int, float)) and 0 < eps <= 1):
        raise NeurodeployError(f"eps {eps!r} must be in (0, 1] (pixel units of [0, 1] images)")
    say = log or (lambda message: None)
    dest = check_out_dir(out, DEMO_FILES, overwrite=True, what="demo")
    model = demo_model()
    result: dict[str, Any] = {}
    steps: list[dict[str, Any]] = []
    total = 6

    def step(i: int, what: str, fn: Callable[[], Any]) -> Any:
        say(f"[{i}/{total}] {what}")
        t0 = time.perf_counter()
        value = fn()
        steps.append({"step": what, "seconds": round(time.perf_counter() - t0, 3)})
        return value

    def write(tmp: Path) -> None:
        from . import sam as sam_mod
        from . import verify as verify_mod
        from .attacks import register_report_section as register_attack
        from .attacks import run_attack
        from .compile import compile_model
        from .inference import evaluate
        from .report import write_report
        from .reporting import build_report
        from .sam import run_sam

        t_start = time.perf_counter()
        compiled, run = tmp / "compiled", tmp / "run"
        step(1, f"compile {model.name} for {DEMO_TARGET} (calibration on {DEMO_DATA})",
             lambda: compile_model(model, DEMO_TARGET, compiled, calib=DEMO_DATA,
                                   log=lambda m: say(f"      {m}")))
        checked = step(2, f"verify float/quantized/hw_sim on {verify_samples} samples, Lava "
                          f"on {lava_samples}",
                       lambda: verify_mod.verify(compiled, DEMO_DATA, verify_samples,
                                                 lava_samples=lava_samples))
        (tmp / "verify.json").write_text(json.dumps(jsonable(checked), indent=1) + "\n")
        if not checked["ok"]:
            raise NeurodeployError("demo: the fixed-point stages disagree with Lava (see "
                                   "neurodeploy verify on the compiled folder)")

        def simulate() -> dict[str, Any]:
            doc = evaluate(compiled, DEMO_DATA, samples, progress=progress)
            doc = {"format": "neurodeploy-simulation", "version": 1, **doc}
            run.mkdir()
            (run / "summary.json").write_text(json.dumps(jsonable(doc), indent=1) + "\n")
            return doc

        sim = step(3, f"simulate the {DEMO_DATA} test set with hw_sim (events per core)",
                   simulate)
        report = step(4, "energy, latency and the ANN vs SNN comparison",
                      lambda: build_report(run))
        sam_doc = step(5, f"spike activation maps on {sam_samples} samples",
                       lambda: run_sam(compiled, DEMO_DATA, sam_samples, out_dir=tmp / "sam",
                                       figures=sam_samples))
        attack = step(6, f"FGSM at eps {eps:g} on {attack_samples} samples (ANN, float SNN, "
                         "deployed SNN)",
                      lambda: run_attack(compiled, attack="fgsm", eps=[0.0, eps],
                                         data=DEMO_DATA, samples=attack_samples,
                                         sam_samples=min(attack_samples, 50),
                                         out=tmp / "attack", log=lambda m: say(f"      {m}")))
        report["verification"] = checked
        report["sam"] = sam_doc
        report["robustness"] = attack
        report["demo"] = {"steps": steps, "seconds": round(time.perf_counter() - t_start, 3),
                          "simulated_samples": sim["samples"]}
        sam_mod.register_report_section()
        verify_mod.register_report_section()
        register_attack()
        write_report(report, tmp)
        (tmp / "demo.json").write_text(json.dumps(jsonable(
            {"format": FORMAT, "version": 1, "model": str(model), "data": DEMO_DATA,
             "target": DEMO_TARGET, **report["demo"]}), indent=1) + "\n")
        result.update(report)

    write_dir_atomic(dest, write)
    return result


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """A few lines for the terminal: accuracy per stage, energy, latency, ANN vs SNN, SAM and
    robustness."""
    from .report import summary_text

    lines = [summary_text(doc)]
    rob = doc.get("robustness") or {}
    acc = rob.get("accuracy") or {}
    eps = rob.get("eps") or []
    if acc and len(eps) > 1:
        parts = [f"{name} {values[0]:.3f} -> {values[-1]:.3f}" for name, values in acc.items()
                 if values and values[0] is not None and values[-1] is not None]
        lines.append(f"FGSM eps {eps[-1]:g} (clean -> attacked): " + ", ".join(parts))
    sam = doc.get("sam") or {}
    if sam.get("layers"):
        lines.append("SAM layers: " + ", ".join(str(r.get("layer")) for r in sam["layers"])
                     + f" (gamma {sam.get('gamma')})")
    ver = doc.get("verification") or {}
    if ver:
        lines.append("verify: " + ("fixed-point stages agree with Lava bit for bit"
                                   if ver.get("ok") else "fixed-point stages DISAGREE"))
    demo = doc.get("demo") or {}
    if demo:
        lines.append(f"demo took {demo['seconds']:.0f} s")
    return lines
