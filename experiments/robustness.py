"""SNN vs ANN accuracy against ε, and SAM vs Grad-CAM change under FGSM (Sharmin et al.: SNNs
more robust than ANNs, especially black-box; SAM paper: SNN heatmaps change less than the
ANN's Grad-CAM under FGSM, and the change falls over time).

The shipped demo CNN (BNTT, direct input, T = 6) and its ANN twin, attacked white-box with
FGSM and PGD-7 (step ε/4, random start) on 500 mnist5k test samples; the SNN's examples also
run on the deployed fixed-point network (hw_sim, loihi2), and black-box transfer (ANN examples
on the SNN, SNN examples on the ANN) is measured. Heatmap change is the normalized L1
distance between clean and adversarial maps (algorithms.md §11.3) on the first 100 samples:
float SAM of each spiking conv layer against Grad-CAM of the matching ANN ReLU layer.

    .venv/bin/python experiments/robustness.py        # about 10 min on 2 cores
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import DATA, DEMO, log, parse_args, save, smoke_model, table

EPS = (0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255, 64 / 255)


def main() -> None:
    args = parse_args(__doc__)
    from neurodeploy.attacks import run_attack

    if args.smoke:
        model = smoke_model(args.work)
        eps, samples, sam_samples, data = EPS[:2], 20, 4, "digits"
    else:
        model, eps, samples, sam_samples, data = DEMO, EPS, 500, 100, DATA
    docs = {}
    for attack in ("fgsm", "pgd"):
        with tempfile.TemporaryDirectory() as tmp:
            docs[attack] = run_attack(model, attack=attack, eps=list(eps), data=data,
                                      samples=samples, out=Path(tmp) / "a",
                                      deployed=not args.smoke, transfer=True,
                                      sam_samples=sam_samples if attack == "fgsm" else 0,
                                      log=log)
    head = ["attack", "model"] + [f"ε={e * 255:.0f}/255" for e in eps]
    rows = []
    for attack, doc in docs.items():
        for name, acc in doc["accuracy"].items():
            if acc is not None and any(a is not None for a in acc):
                rows.append([attack.upper(), name] + list(acc))
        for name, acc in (doc.get("transfer") or {}).items():
            if isinstance(acc, list):
                rows.append([attack.upper(), f"transfer: {name}"] + list(acc))
    print(table(head, rows))
    fgsm = docs["fgsm"]
    change = []
    for layer, row in ((fgsm.get("sam_stability") or {}).get("layers") or {}).items():
        change.append([f"SAM {layer}"] + list(row["l1"]))
    for layer, row in ((fgsm.get("gradcam_stability") or {}).get("layers") or {}).items():
        change.append([f"Grad-CAM {row.get('ann_layer', layer)}"] + list(row["l1"]))
    if change:
        print(table(["heatmap (FGSM)"] + [f"ε={e * 255:.0f}/255" for e in eps], change))
    save(args.results, "robustness",
         {"experiment": "SNN vs ANN under FGSM/PGD; SAM vs Grad-CAM change", "data": data,
          "samples": samples, "eps": list(eps),
          "fgsm": {k: fgsm.get(k) for k in ("accuracy", "transfer", "sam_stability",
                                            "gradcam_stability", "params")},
          "pgd": {k: docs["pgd"].get(k) for k in ("accuracy", "transfer", "params")}})


if __name__ == "__main__":
    main()
