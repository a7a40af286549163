"""Leak sweep: accuracy and SAM localization of the small BNTT CNN for LIF leaks 0.7 to 0.99
(the SAM paper varies the leak; algorithms.md §12 leaves the direction to the PDF).

Each leak trains the zoo ``cnn`` (T = 6, BNTT, direct input) on mnist5k for 4 epochs (the
shipped demo uses 6). SAM localization is the SAM paper's error (pixel-wise binary cross
entropy, ``neurodeploy.sam.localization_error``) of each spiking conv layer's SAM against the
Grad-CAM of the trained ANN twin (``demo_cnn_ann``: same architecture and data, the reference
for every leak), averaged over samples and time steps; SNN Grad-CAM's error is given beside.

    .venv/bin/python experiments/leak_sweep.py            # about 15 min on 2 cores
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import DATA, DEMO_ANN, log, parse_args, save, table, train_cached

LEAKS = (0.7, 0.8, 0.9, 0.95, 0.99)


def main() -> None:
    args = parse_args(__doc__)
    from neurodeploy.sam import run_sam

    leaks = LEAKS[:1] if args.smoke else LEAKS
    epochs, samples = (1, 4) if args.smoke else (4, 64)
    rows = []
    for leak in leaks:
        folder, trained = train_cached(args.work, f"leak_{leak}", epochs=epochs, timesteps=6,
                                       bntt=True, leak=leak)
        with tempfile.TemporaryDirectory() as tmp:
            doc = run_sam(folder, DATA, samples, out_dir=Path(tmp) / "sam", ann=DEMO_ANN,
                          figures=0, log=log)
        row = {"leak": leak, "test_accuracy": trained["test_accuracy"], "layers": {}}
        for layer in doc["layers"]:
            loc = layer.get("localization") or {}
            row["layers"][layer["layer"]] = {
                "sam_error": (loc.get("sam") or {}).get("error"),
                "snn_gradcam_error": (loc.get("snn_gradcam") or {}).get("error"),
                "sam_variance": (layer.get("variance") or {}).get("sam")}
        rows.append(row)
    names = list(rows[0]["layers"])
    head = ["leak", "test accuracy"] + [f"SAM loc. err {n}" for n in names] \
        + [f"SNN Grad-CAM loc. err {n}" for n in names]
    print(table(head, [[r["leak"], r["test_accuracy"]]
                       + [r["layers"][n]["sam_error"] for n in names]
                       + [r["layers"][n]["snn_gradcam_error"] for n in names] for r in rows]))
    save(args.results, "leak_sweep",
         {"experiment": "leak sweep", "data": DATA, "epochs": epochs, "samples": samples,
          "timesteps": 6, "reference": "Grad-CAM of demo_cnn_ann", "rows": rows})


if __name__ == "__main__":
    main()
