"""BNTT vs no BNTT at low time steps (BNTT paper: close to conversion accuracy with ~40x fewer
steps; without BNTT a low-T SNN trains much worse; BNTT also helps under noise; the learned
γ falls over time, which is what early exit uses).

For T in {2, 4}, the zoo ``cnn`` (direct input, leak 0.95) trains on mnist5k for 4 epochs
with and without BNTT, same seed. Measured: clean test accuracy; accuracy under Gaussian
pixel noise (σ = 0.1, 0.2, 0.3, 0.5) and under FGSM (ε = 0.05, 0.1) on 500 test samples,
float model (``neurodeploy.attacks.run_attack``); and for BNTT models the mean |γ| per layer
and time step.

    .venv/bin/python experiments/bntt_timesteps.py        # about 12 min on 2 cores
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import DATA, log, parse_args, save, table, train_cached

TIMESTEPS = (2, 4)
NOISE = (0.0, 0.1, 0.2, 0.3, 0.5)
FGSM = (0.0, 0.05, 0.1)


def mean_gamma(folder: Path) -> dict[str, list[float]]:
    """Mean |γ| over channels per BNTT layer and time step."""
    from neurodeploy.models.checkpoint import checkpoint_file, load_checkpoint
    from neurodeploy.models.layers import BNTT

    model, _, _ = load_checkpoint(checkpoint_file(folder))
    return {name: [float(bn.weight.detach().abs().mean()) for bn in m.bn]
            for name, m in model.named_modules() if isinstance(m, BNTT)}


def attacked(folder: Path, attack: str, eps: tuple[float, ...], samples: int) -> list[float]:
    from neurodeploy.attacks import run_attack

    with tempfile.TemporaryDirectory() as tmp:
        doc = run_attack(folder, attack=attack, eps=list(eps), data=DATA, samples=samples,
                         out=Path(tmp) / "a", deployed=False, transfer=False, sam_samples=0,
                         log=log)
    return doc["accuracy"]["snn_float"]


def main() -> None:
    args = parse_args(__doc__)
    steps = TIMESTEPS[:1] if args.smoke else TIMESTEPS
    epochs, samples = (1, 20) if args.smoke else (4, 500)
    rows = []
    for T in steps:
        for bntt in (True, False):
            name = f"bntt_T{T}_{'bntt' if bntt else 'plain'}"
            folder, trained = train_cached(args.work, name, epochs=epochs, timesteps=T,
                                           bntt=bntt)
            rows.append({"timesteps": T, "bntt": bntt,
                         "test_accuracy": trained["test_accuracy"],
                         "train_seconds": trained["seconds"],
                         "noise": dict(zip(NOISE, attacked(folder, "noise", NOISE, samples))),
                         "fgsm": dict(zip(FGSM, attacked(folder, "fgsm", FGSM, samples))),
                         "mean_gamma": mean_gamma(folder) if bntt else None})
    head = ["T", "BNTT", "clean (1,000 test)"] + [f"noise σ={s}" for s in NOISE[1:]] \
        + [f"FGSM ε={e}" for e in FGSM[1:]]
    print(table(head, [[r["timesteps"], "yes" if r["bntt"] else "no", r["test_accuracy"]]
                       + [r["noise"][s] for s in NOISE[1:]] + [r["fgsm"][e] for e in FGSM[1:]]
                       for r in rows]))
    for r in rows:
        if r["mean_gamma"]:
            print(f"T={r['timesteps']} mean |gamma| per step:",
                  {k: [round(v, 3) for v in g] for k, g in r["mean_gamma"].items()})
    save(args.results, "bntt_timesteps",
         {"experiment": "BNTT vs no BNTT at low T", "data": DATA, "epochs": epochs,
          "attack_samples": samples, "rows": rows})


if __name__ == "__main__":
    main()
