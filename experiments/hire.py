"""HIRE-SNN vs standard training under PGD and FGSM (HIRE-SNN paper: up to +13.7 % FGSM and
+10.1 % PGD accuracy over standard direct-input SNNs at negligible clean loss).

Standard: the shipped demo CNN (``neurodeploy train`` defaults: zoo ``cnn``, BNTT, T = 6,
6 epochs on mnist5k, seed 0). HIRE: the same settings with ``hire={"periods": 2, "eps":
8/255}`` (2 periods of 3 steps; one weight update per period). Both are attacked white-box
on their float model (BPTT through the surrogate) with FGSM and PGD-7 (step ε/4, random
start) on 500 test samples; the adversarial examples are also run on the deployed
fixed-point network (hw_sim, loihi2).

    .venv/bin/python experiments/hire.py        # about 25 min on 2 cores (11 of them training)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import DATA, DEMO, SMOKE, log, parse_args, save, smoke_model, table, train_cached

EPS = (0.0, 4 / 255, 8 / 255, 16 / 255, 32 / 255, 64 / 255)


def attacked(folder: Path, attack: str, eps: tuple[float, ...], samples: int,
             deployed: bool, data: str) -> dict:
    from neurodeploy.attacks import run_attack

    with tempfile.TemporaryDirectory() as tmp:
        doc = run_attack(folder, attack=attack, eps=list(eps), data=data, samples=samples,
                         out=Path(tmp) / "a", deployed=deployed, transfer=False,
                         sam_samples=0, log=log)
    acc = doc["accuracy"]
    return {"snn_float": acc["snn_float"], "snn_deployed": acc.get("snn_deployed")}


def main() -> None:
    args = parse_args(__doc__)
    if args.smoke:
        standard = smoke_model(args.work)
        hire, trained = train_cached(args.work, "hire_N2", hire={"periods": 2, "eps": 8 / 255},
                                     **SMOKE)
        eps, samples, data = EPS[:2], 20, "digits"
    else:
        standard = DEMO
        hire, trained = train_cached(args.work, "hire_N2", epochs=6,
                                     hire={"periods": 2, "eps": 8 / 255}, timesteps=6,
                                     bntt=True)
        eps, samples, data = EPS, 500, DATA
    rows = {}
    for name, folder in (("standard", standard), ("hire", hire)):
        rows[name] = {attack: attacked(folder, attack, eps, samples, not args.smoke, data)
                      for attack in ("fgsm", "pgd")}
    head = ["model", "attack", "deployed?"] + [f"ε={e * 255:.0f}/255" for e in eps]
    lines = []
    for name, by_attack in rows.items():
        for attack, acc in by_attack.items():
            for which in ("snn_float", "snn_deployed"):
                if acc[which] is not None:
                    lines.append([name, attack.upper(), "deployed" if which == "snn_deployed"
                                  else "float"] + list(acc[which]))
    print(table(head, lines))
    save(args.results, "hire",
         {"experiment": "HIRE-SNN vs standard", "data": data, "eps": list(eps),
          "samples": samples, "hire_train": {k: trained.get(k) for k in
                                             ("test_accuracy", "seconds", "hire")},
          "standard": str(standard), "rows": rows})


if __name__ == "__main__":
    main()
