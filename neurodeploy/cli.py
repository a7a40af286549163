"""The ``neurodeploy`` command line: a thin layer over :mod:`neurodeploy.api`.

Every :class:`~neurodeploy.errors.NeurodeployError` becomes one line
``neurodeploy: error: <message>`` on stderr and exit status 2, with no output folder left
behind; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import BadInputFileError, NeurodeployError

PROG = "neurodeploy"

SIMULATE_EPILOG = """\
examples:
  neurodeploy simulate pilotnet --out pilotnet-out
      PilotNet from lava-dl with its driving image: 16 steps, reset every 16 steps
  neurodeploy simulate model.net --input batch.npy --steps 32 --record s --out run1
      your netx model on a batch of bias inputs (netx layout: batch, W, H, C)
  neurodeploy simulate model.net --input events.npy --input-mode spikes --backend lava --out run2
      spike input (W, H, C, T), cross-checked on Lava's bit-accurate models

built-in examples (need lava-dl, Python 3.10):
{examples}

output: DIR/trace.npz (<layer>.u/.v/.s, time last, model file layout) and DIR/summary.json
"""

TRAIN_EPILOG = """\
examples:
  neurodeploy train --out run1
      the default small BNTT CNN on mnist5k (about 96% in a few minutes on 2 cores)
  neurodeploy train --model mlp --data digits --epochs 5 --timesteps 8 --no-bntt --out run2
  neurodeploy train --ann --out ann1
      the ANN twin of the default CNN (for conversion and cost comparison)
  neurodeploy train --hire 2 --hire-eps 0.03 --out hire1
      HIRE-SNN: 2 periods of T/2 steps, noise crafted period by period (robustness)

output: DIR/model.pt, DIR/config.json, DIR/train.json (test_accuracy, per-epoch history)
"""

CONVERT_EPILOG = """\
examples:
  neurodeploy convert ann1 --calib mnist5k --out snn1
  neurodeploy convert model.onnx --calib digits --method p99.9 --steps 20,50,100 --out snn2

output: DIR/snn.ir.h5 (the SNN), DIR/conversion.json (thresholds, accuracy per T),
        DIR/accuracy_vs_timesteps.png, and DIR/model.pt for zoo checkpoints
"""

INSPECT_EPILOG = """\
examples:
  neurodeploy inspect pilotnet
  neurodeploy inspect path/to/network.net
  neurodeploy inspect run1/model.pt
  neurodeploy inspect lif_norse.nir --dt 1e-4
"""


def _say(args: argparse.Namespace, message: str) -> None:
    """Progress on stderr (stdout stays for results)."""
    if not getattr(args, "quiet", False):
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``neurodeploy`` command."""
    from .examples import describe

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compile, simulate bit-exactly and cost spiking neural networks for "
                    "Loihi-style neuromorphic chips.",
        epilog="run 'neurodeploy COMMAND --help' for a command's options",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    dem = sub.add_parser(
        "demo", help="the whole pipeline on the shipped CNN and built-in data (start here)",
        description="Compile the shipped BNTT CNN for Loihi 2, verify it against Lava, simulate\n"
                    "the mnist5k test set with hw_sim, cost it (energy, latency, ANN vs SNN),\n"
                    "draw Spike Activation Maps and check FGSM robustness at one eps. Writes\n"
                    "DIR/report.html and DIR/report.json (and one sub-folder per step).",
        epilog="examples:\n  neurodeploy demo\n  neurodeploy demo --out my-demo --samples 200",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dem.add_argument("--out", default="demo-out", metavar="DIR",
                     help="output folder (default demo-out; a previous demo there is replaced)")
    dem.add_argument("--samples", type=int, default=None, metavar="N",
                     help="test samples simulated with hw_sim (default: all 1,000)")
    dem.add_argument("--eps", type=float, default=0.1, metavar="E",
                     help="FGSM eps in pixel units of [0, 1] images (default 0.1)")
    dem.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    dem.set_defaults(func=cmd_demo)

    sim = sub.add_parser(
        "simulate", help="run a network on inputs and save traces and spike counts",
        description="Simulate a fixed-point network (netx HDF5 file or built-in example) on\n"
                    "one sample or a batch, print per-layer activity and save trace.npz and\n"
                    "summary.json.",
        epilog=SIMULATE_EPILOG.format(
            examples="\n".join("  " + line for line in describe().splitlines())
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sim.add_argument("model", metavar="MODEL",
                     help="model file (netx HDF5 .net/.h5), a built-in example name, or a "
                          "compile folder (with --data: a dataset run with event accounting)")
    sim.add_argument("--data", metavar="DATA",
                     help="compile folders: run the test split of DATA (digits, mnist5k, .npz, "
                          "image or idx folder; default: the model's training data) with the "
                          "staggered reset and count events per core for `neurodeploy report`")
    sim.add_argument("--samples", type=int, metavar="N",
                     help="with --data: samples of the test split (default: all)")
    sim.add_argument("--batch", type=int, default=64, metavar="B",
                     help="with --data: samples per hw_sim batch (default 64)")
    sim.add_argument("--out", required=True, metavar="DIR",
                     help="output folder (created; must be new, empty or a previous output)")
    sim.add_argument("--backend", default="hw_sim", metavar="{hw_sim,lava}",
                     help="hw_sim: fast bit-exact simulator (default); lava: Lava's fixed_pt "
                          "process models (Python 3.10, CPU)")
    sim.add_argument("--input", metavar="FILE",
                     help="input .npy (or .npz with one array) in the model file's layout, "
                          "one sample or a batch (leading axis); default: the example's input")
    sim.add_argument("--input-mode", metavar="{bias,spikes}",
                     help="bias: constant bias mantissas of the input layer (default); "
                          "spikes: events per step, time last")
    sim.add_argument("--steps", type=int, metavar="T",
                     help="time steps to simulate (default: the example's, or the spike "
                          "input's length)")
    sim.add_argument("--reset-interval", type=int, metavar="K",
                     help="zero u and v every K steps, staggered per layer as netx does "
                          "(default: the example's, else none)")
    sim.add_argument("--reset-offset", type=int, default=0, metavar="K",
                     help="shift of the reset schedule in steps (default 0)")
    sim.add_argument("--record", default="u,v,s", metavar="u,v,s",
                     help="state to record per layer: any of u (current), v (voltage), "
                          "s (spikes), comma separated (default u,v,s); 'none' records nothing")
    sim.add_argument("--layers", metavar="A,B",
                     help="record only these layers (default: every layer with neurons)")
    sim.add_argument("--device", default="cpu", metavar="{cpu,cuda}",
                     help="hw_sim device: cpu (default), cuda or cuda:N")
    sim.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    sim.set_defaults(func=cmd_simulate)

    ins = sub.add_parser(
        "inspect", help="print a network's layers, shapes and parameters",
        description="Print one row per layer (type, shape, neurons, synapses, fixed-point\n"
                    "parameters) of a model file or built-in example.",
        epilog=INSPECT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ins.add_argument("model", metavar="MODEL",
                     help="model file (.net/.h5 netx, .ir.h5, .pt checkpoint, .onnx, .nir), a "
                          "folder holding one, or a built-in example name")
    ins.add_argument("--dt", type=float, default=None, metavar="SECONDS",
                     help="time step of a NIR graph (NIR files hold none; default 1.0)")
    ins.set_defaults(func=cmd_inspect)

    trn = sub.add_parser(
        "train", help="train a model-zoo SNN (or its ANN twin) on offline data",
        description="Train a model-zoo network with BPTT through the surrogate gradient and\n"
                    "write DIR/model.pt (loadable with torch.load(weights_only=True)),\n"
                    "DIR/config.json (how to rebuild it) and DIR/train.json (accuracy).",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trn.add_argument("--model", default=None, metavar="NAME",
                     help="architecture: mlp, cnn, vgg5, vgg9, vgg11, resnet (default cnn)")
    trn.add_argument("--data", default=None, metavar="DATA",
                     help="digits, mnist5k (default), a .npz with x/y, an image folder or an "
                          "MNIST idx folder")
    trn.add_argument("--epochs", type=int, default=None, metavar="E", help="passes over the data")
    trn.add_argument("--timesteps", type=int, default=None, metavar="T", help="SNN time steps")
    trn.add_argument("--bntt", dest="bntt", action="store_true", default=None,
                     help="batch norm through time in every hidden layer (default on)")
    trn.add_argument("--no-bntt", dest="bntt", action="store_false", help="no BNTT")
    trn.add_argument("--leak", type=float, default=None, metavar="L",
                     help="LIF leak per step, 0 < L <= 1 (default 0.95)")
    trn.add_argument("--ann", action="store_true", help="train the ANN twin (ReLU) instead")
    trn.add_argument("--encoder", default=None, metavar="{direct,poisson}",
                     help="input encoding (default direct: analog current every step)")
    trn.add_argument("--width", type=float, default=None, metavar="W",
                     help="scale every channel and hidden size (default 1.0)")
    trn.add_argument("--batch-size", type=int, default=None, metavar="B")
    trn.add_argument("--lr", type=float, default=None, help="learning rate")
    trn.add_argument("--seed", type=int, default=None, help="seed of weights and batches")
    trn.add_argument("--image-size", type=int, default=None, metavar="PX",
                     help="resize images of an image folder to PX x PX")
    trn.add_argument("--max-minutes", type=float, default=None, metavar="M",
                     help="stop training after M minutes (the model is still evaluated)")
    trn.add_argument("--hire", type=int, default=None, metavar="N",
                     help="HIRE-SNN training: split the T steps into N periods, one weight "
                          "update per period, each period's input perturbed by noise crafted "
                          "from the previous period's input gradient (N must divide T)")
    trn.add_argument("--hire-eps", type=float, default=None, metavar="E",
                     help="HIRE noise bound in pixel units of [0, 1] images (default 8/255)")
    trn.add_argument("--hire-reset-state", action="store_true",
                     help="HIRE: start each period from zero state (default: carry it over, "
                          "detached)")
    trn.add_argument("--hire-carry-noise", action="store_true",
                     help="HIRE: carry the crafted noise across mini-batches (default: 0 per "
                          "batch)")
    trn.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    trn.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    trn.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    trn.set_defaults(func=cmd_train)

    cnv = sub.add_parser(
        "convert", help="convert a ReLU ANN to a spiking network (threshold balancing)",
        description="Convert an ANN (a zoo ANN checkpoint or an ONNX file) to an IF SNN with\n"
                    "reset by subtraction: fold batch norm, balance thresholds layer by layer\n"
                    "on calibration data, and report accuracy against time steps.",
        epilog=CONVERT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cnv.add_argument("ann", metavar="ANN", help="zoo ANN checkpoint (model.pt or its folder) or "
                                                ".onnx file")
    cnv.add_argument("--calib", default="mnist5k", metavar="DATA",
                     help="calibration data (training split), as for train --data")
    cnv.add_argument("--calib-samples", type=int, default=512, metavar="N")
    cnv.add_argument("--method", default="max", metavar="{max,p99.7,p99.9}",
                     help="threshold per layer: max input current, or a percentile")
    cnv.add_argument("--steps", default=None, metavar="T1,T2,...",
                     help="time steps to evaluate (default 10,20,50,100,200)")
    cnv.add_argument("--eval-data", default=None, metavar="DATA",
                     help="evaluation data (test split; default: --calib)")
    cnv.add_argument("--eval-samples", type=int, default=None, metavar="N")
    cnv.add_argument("--reset", default="subtract", metavar="{subtract,zero}")
    cnv.add_argument("--encoding", default="direct", metavar="{direct,poisson}")
    cnv.add_argument("--scale", type=float, default=1.0,
                     help="multiply every threshold (e.g. 0.7 for low latency)")
    cnv.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    cnv.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    cnv.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    cnv.set_defaults(func=cmd_convert)

    cmp_ = sub.add_parser(
        "compile", help="quantize, legalize and map a model onto a neuromorphic target",
        description="Compile a model (.pt, .onnx, .nir, .net, IR file or folder) for a target:\n"
                    "fold BNTT/BN, quantize, legalize for netx, map onto cores. Writes\n"
                    "DIR/model.ir.h5, DIR/network.net (when netx can hold it),\n"
                    "DIR/mapping.json and DIR/compile.json.",
        epilog="examples:\n  neurodeploy compile run1/model.pt --target loihi2 --calib mnist5k "
               "--out c1\n  neurodeploy compile network.net --target loihi1 --out c2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmp_.add_argument("model", metavar="MODEL", help="model file or folder")
    cmp_.add_argument("--target", required=True, metavar="TARGET",
                      help="loihi1, loihi1-sanafe, loihi2 or a target .toml file")
    cmp_.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    cmp_.add_argument("--calib", default=None, metavar="DATA",
                      help="calibration data (training split) for ranges and the BNTT "
                           "accuracy change")
    cmp_.add_argument("--calib-samples", type=int, default=64, metavar="N")
    cmp_.add_argument("--timesteps", type=int, default=None, metavar="T",
                      help="time steps per inference (default: the model's)")
    cmp_.add_argument("--hard-reset", action="store_true",
                      help="turn soft-reset neurons into Lava's hard reset (for targets "
                           "without programmable neurons and for netx files)")
    cmp_.add_argument("--bntt", default="fold", choices=("fold", "schedule"),
                      help="BNTT layers: fold time-averaged statistics into the synapses "
                           "(default; any target) or keep the exact per-step schedule as "
                           "custom neurons (targets with programmable neurons)")
    cmp_.add_argument("--sam", default=None, metavar="L1,L2",
                      help="conv spiking layers that carry an on-chip SAM accumulator (targets "
                           "with programmable neurons); mapping.json and dataset runs then "
                           "include its compartments, synapses and energy")
    cmp_.add_argument("--sam-gamma", type=float, default=0.5, metavar="G",
                      help="the SAM accumulator's gamma per time step (default 0.5)")
    cmp_.add_argument("--overwrite", action="store_true", help="replace a previous compile")
    cmp_.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    cmp_.set_defaults(func=cmd_compile)

    ver = sub.add_parser(
        "verify", help="compare float, quantized, hw_sim and Lava on test data",
        description="Run a compile folder's stages on the same test samples: accuracy per\n"
                    "stage, per-layer spike agreement, the first layer where stages diverge.\n"
                    "Exit status 1 when the fixed-point stages (quantized, hw_sim, Lava)\n"
                    "disagree, 2 on bad input.",
        epilog="examples:\n  neurodeploy verify c1 --data mnist5k --samples 200\n"
               "  neurodeploy verify c1 --lava-samples 0 --out verify.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ver.add_argument("dir", metavar="DIR", help="a neurodeploy compile output folder")
    ver.add_argument("--data", default=None, metavar="DATA",
                     help="test data (test split): digits, mnist5k, .npz, image or idx folder "
                          "(default: the dataset the model was trained on, when recorded)")
    ver.add_argument("--samples", type=int, default=100, metavar="N")
    ver.add_argument("--lava-samples", type=int, default=4, metavar="K",
                     help="samples also run on Lava (slow: seconds each); 0 skips Lava")
    ver.add_argument("--backends", default="float,quantized,hw_sim,lava", metavar="STAGES",
                     help="stages to run, comma separated")
    ver.add_argument("--out", default=None, metavar="FILE.json",
                     help="also write the full result as JSON")
    ver.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    ver.set_defaults(func=cmd_verify)

    rep = sub.add_parser(
        "report", help="energy, latency and activity report of a dataset simulation",
        description="Write DIR/report.json (versioned schema) and DIR/report.html (one\n"
                    "self-contained page with plots) for a folder made by\n"
                    "`neurodeploy simulate COMPILE_DIR --data DATA --out DIR`, and print a\n"
                    "short summary.",
        epilog="example:\n  neurodeploy compile models/checkpoints/demo_cnn --target loihi2 --out c\n"
               "  neurodeploy simulate c --data mnist5k --samples 500 --out s\n"
               "  neurodeploy report s",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("dir", metavar="DIR", help="a dataset simulation folder")
    rep.add_argument("--ann", default=None, metavar="ANN",
                     help="ANN for the comparison section (default: the model's trained twin "
                          "<model>_ann when it exists, else the zoo twin's architecture)")
    rep.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    rep.set_defaults(func=cmd_report)

    cmpr = sub.add_parser(
        "compare", help="ANN vs SNN deployment cost and accuracy",
        description="Cost of an ANN on the cpu, gpu and edge-int8 presets (compute-only at\n"
                    "FP32/INT8 and memory-aware) against the SNN on its neuromorphic target,\n"
                    "accuracy of both, spikes per synapse against the break-even band.",
        epilog="example:\n  neurodeploy compare s --ann models/checkpoints/demo_cnn_ann",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmpr.add_argument("snn", metavar="SNN",
                      help="a dataset simulation folder (neurodeploy simulate COMPILE_DIR "
                           "--data ...)")
    cmpr.add_argument("--ann", default=None, metavar="ANN",
                      help="ANN model (default: the SNN's trained twin <model>_ann, else the "
                           "zoo twin's architecture without accuracy)")
    cmpr.add_argument("--data", default=None, metavar="DATA",
                      help="data for the ANN's accuracy (default: the simulation's)")
    cmpr.add_argument("--samples", type=int, default=None, metavar="N")
    cmpr.add_argument("--plot", default=None, metavar="FILE.png|svg",
                      help="save the comparison plot")
    cmpr.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    cmpr.set_defaults(func=cmd_compare)

    sam_ = sub.add_parser(
        "sam", help="Spike Activation Maps: float, on-chip accumulator, Grad-CAM comparison",
        description="Spike Activation Maps (SAM) of a model's conv spiking layers: the float\n"
                    "reference and the on-chip fixed-point accumulator of the deployed model,\n"
                    "Grad-CAM on the ANN twin and SNN Grad-CAM, localization error and drift.\n"
                    "Writes DIR/sam.npz, DIR/sam.json, PNG figures and DIR/report.html.",
        epilog="examples:\n  neurodeploy sam --out sam1\n"
               "  neurodeploy sam c --data mnist5k --samples 8 --layers lif2 --gamma 0.3 "
               "--out sam2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sam_.add_argument("model", nargs="?", default=None, metavar="MODEL_OR_DIR",
                      help="SNN checkpoint or compile folder (default: the shipped demo CNN)")
    sam_.add_argument("--data", default=None, metavar="DATA",
                      help="test data (default: the dataset the model was trained on)")
    sam_.add_argument("--samples", type=int, default=4, metavar="N")
    sam_.add_argument("--layers", default=None, metavar="L1,L2",
                      help="conv spiking layers (default: all)")
    sam_.add_argument("--gamma", type=float, default=0.5, metavar="G",
                      help="SAM kernel steepness per step, > 0 (default 0.5)")
    sam_.add_argument("--mode", default="inclusive",
                      choices=("inclusive", "exclusive", "official"))
    sam_.add_argument("--ann", default=None, metavar="ANN",
                      help="ANN for Grad-CAM (default: the trained twin <model>_ann)")
    sam_.add_argument("--target", default="loihi2", metavar="TARGET",
                      help="target of the in-memory compile of a checkpoint (default loihi2)")
    sam_.add_argument("--scale", type=int, default=4096, metavar="A",
                      help="on-chip trace increment per spike (default 4096)")
    sam_.add_argument("--alpha-mode", default="time_sum", choices=("time_sum", "per_t"),
                      help="SNN Grad-CAM channel weights (default: time_sum, the paper's)")
    sam_.add_argument("--calib-samples", type=int, default=64, metavar="N")
    sam_.add_argument("--figures", type=int, default=8, metavar="N",
                      help="samples drawn as PNG figures (default 8)")
    sam_.add_argument("--out", required=True, metavar="DIR", help="output folder")
    sam_.add_argument("--overwrite", action="store_true", help="replace a previous SAM run")
    sam_.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    sam_.set_defaults(func=cmd_sam)

    att = sub.add_parser(
        "attack", help="adversarial robustness: FGSM/PGD/noise on the ANN, float and deployed SNN",
        description="Craft adversarial examples white-box on the float SNN (BPTT through the\n"
                    "surrogate, straight through a Poisson encoder) and on its ANN twin, and\n"
                    "evaluate them on the ANN, the float SNN and the deployed fixed-point SNN\n"
                    "(hw_sim). eps is in pixel units of [0, 1] images. Writes\n"
                    "DIR/robustness.json, DIR/robustness.png and DIR/report.html.",
        epilog="examples:\n  neurodeploy attack --attack fgsm --eps 0,2/255,8/255 --out rob1\n"
               "  neurodeploy attack run1 --attack pgd --steps 7 --eps 0,0.05,0.1 "
               "--samples 200 --out rob2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    att.add_argument("model", nargs="?", default=None, metavar="MODEL_OR_DIR",
                     help="SNN checkpoint or compile folder (default: the shipped demo CNN)")
    att.add_argument("--attack", default="fgsm", choices=("fgsm", "pgd", "noise"))
    att.add_argument("--eps", default="0,2/255,4/255,8/255", metavar="LIST",
                     help="comma-separated eps values, fractions allowed (default "
                          "0,2/255,4/255,8/255)")
    att.add_argument("--ann", default=None, metavar="ANN",
                     help="the ANN twin (default: <model folder>_ann when it exists)")
    att.add_argument("--data", default=None, metavar="DATA",
                     help="test data (default: the dataset the model was trained on)")
    att.add_argument("--samples", type=int, default=500, metavar="N")
    att.add_argument("--steps", type=int, default=7, metavar="K", help="PGD steps (default 7)")
    att.add_argument("--step-size", type=float, default=None, metavar="A",
                     help="PGD step in pixel units (default eps/4)")
    att.add_argument("--restarts", type=int, default=1, metavar="R",
                     help="PGD restarts, the worst case per sample is kept (default 1)")
    att.add_argument("--no-random-start", action="store_true",
                     help="PGD starts at the clean image (default: uniform in the eps-ball)")
    att.add_argument("--surrogate", default=None, metavar="NAME",
                     help="surrogate gradient while crafting (default: the model's own)")
    att.add_argument("--seed", type=int, default=0, help="seeds every random draw")
    att.add_argument("--target", default="loihi2", metavar="TARGET",
                     help="target of the in-memory compile of a checkpoint (default loihi2)")
    att.add_argument("--no-deployed", action="store_true",
                     help="skip the deployed (hw_sim) evaluation")
    att.add_argument("--quantized", action="store_true",
                     help="also evaluate the fixed-point graph before legalization")
    att.add_argument("--transfer", action="store_true",
                     help="also evaluate black-box transfer (ANN examples on the SNN and back)")
    att.add_argument("--sam-samples", type=int, default=100, metavar="N",
                     help="samples for SAM / Grad-CAM stability (0 skips; default 100)")
    att.add_argument("--out", required=True, metavar="DIR", help="output folder")
    att.add_argument("--overwrite", action="store_true", help="replace a previous attack run")
    att.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    att.set_defaults(func=cmd_attack)

    prn = sub.add_parser(
        "prune", help="prune an SNN (magnitude or attention-guided) and cost it deployed",
        description="Prune a spiking network's weights by magnitude (global or per layer) or\n"
                    "attention-guided after Spike-Thrift's AGC, fine-tune with the masks fixed,\n"
                    "then compile and run each sparsity deployed: accuracy, cores, synaptic\n"
                    "memory and energy saved against accuracy lost. Writes DIR/pruning.json,\n"
                    "DIR/pruning.png and one checkpoint per sparsity (DIR/s0.9/model.pt).",
        epilog="examples:\n  neurodeploy prune --sparsity 0.5,0.9 --out prune1\n"
               "  neurodeploy prune run1 --method agc --scope layer --sparsity 0.8 "
               "--finetune-epochs 2 --out prune2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prn.add_argument("model", nargs="?", default=None, metavar="MODEL",
                     help="zoo checkpoint (default: the shipped demo CNN)")
    prn.add_argument("--method", default="magnitude", choices=("magnitude", "agc"))
    prn.add_argument("--scope", default="global", choices=("global", "layer"),
                     help="one magnitude threshold over all layers, or the same sparsity per "
                          "layer (default global)")
    prn.add_argument("--sparsity", default="0.5,0.8,0.9,0.95", metavar="LIST",
                     help="fractions of weights removed, each in [0, 1) (default "
                          "0.5,0.8,0.9,0.95)")
    prn.add_argument("--finetune-epochs", type=int, default=1, metavar="E",
                     help="fine-tuning epochs with the mask fixed (default 1; 0: none)")
    prn.add_argument("--beta", type=float, default=1000.0, metavar="B",
                     help="AGC attention-transfer weight (default 1000)")
    prn.add_argument("--keep-first", action="store_true", help="do not prune the first layer")
    prn.add_argument("--keep-last", action="store_true", help="do not prune the last layer")
    prn.add_argument("--data", default=None, metavar="DATA",
                     help="data (default: the dataset the model was trained on)")
    prn.add_argument("--samples", type=int, default=500, metavar="N",
                     help="test samples for the accuracies and energy (default 500)")
    prn.add_argument("--target", default="loihi2", metavar="TARGET")
    prn.add_argument("--seed", type=int, default=0)
    prn.add_argument("--out", required=True, metavar="DIR", help="output folder")
    prn.add_argument("--overwrite", action="store_true", help="replace a previous pruning run")
    prn.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    prn.set_defaults(func=cmd_prune)

    tgt = sub.add_parser(
        "targets", help="list the hardware targets (or show one in full)",
        description="List the built-in targets (neuromorphic chips and ANN devices), or print\n"
                    "every number of one target with its source.",
        epilog="examples:\n  neurodeploy targets\n  neurodeploy targets loihi2\n"
               "  neurodeploy targets my-chip.toml   (validate your own file)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tgt.add_argument("target", nargs="?", metavar="TARGET",
                     help="a built-in target name or a .toml file to show and validate")
    tgt.set_defaults(func=cmd_targets)
    return parser


# ------------------------------------------------------------------------------- commands


def _resolve_model(spec: str) -> tuple[Path, Any]:
    """``(model path, Example or None)`` for a MODEL argument."""
    from . import examples

    path = Path(spec)
    if path.exists():
        return path, None
    if spec in examples.names():
        example = examples.resolve(spec)
        return example.path, example
    raise BadInputFileError(
        path, "no such file", hint=f"built-in examples: {', '.join(examples.names())}"
    )


def _record_spec(record: str, layers: str | None) -> Any:
    """``--record``/``--layers`` → the ``record`` argument of :func:`neurodeploy.api.simulate`."""
    what = [] if record.strip().lower() == "none" else _csv(record)
    if layers is None:
        return what or None
    names = _csv(layers)
    if not names:
        raise NeurodeployError("--layers needs at least one layer name")
    return {name: what for name in names}


def _format_activity(rows: list[dict[str, Any]]) -> str:
    """Per-layer activity as an aligned text table."""
    header = ("layer", "neurons", "spikes", "spikes/sample", "rate/neuron/step")
    body = []
    for row in rows:
        body.append((
            row["layer"],
            "?" if row["neurons"] is None else f"{row['neurons']:,}",
            f"{row['spikes']:,}",
            f"{row['spikes_per_sample']:,.1f}",
            "?" if row["rate"] is None else f"{row['rate']:.4f}",
        ))
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    lines = [line(header), "  ".join("-" * w for w in widths)]
    lines.extend(line(r) for r in body)
    return "\n".join(lines)


def cmd_simulate(args: argparse.Namespace) -> int:
    """``neurodeploy simulate``: see the command's ``--help``."""
    from . import api

    out = api.check_out_dir(args.out)
    model_path, example = _resolve_model(args.model)
    if (model_path / "compile.json").is_file() and args.input is None:
        return _simulate_dataset(args, model_path, out)
    if args.data is not None:
        raise NeurodeployError(f"--data runs a compile folder; {args.model} is not one "
                               "(make one with neurodeploy compile)")
    input_path = args.input
    if input_path is None and example is not None and example.input_path is not None:
        input_path = example.input_path
    if input_path is None:
        raise NeurodeployError(f"no input for {args.model}: give --input FILE.npy")
    if not Path(input_path).is_file():  # fail before the (slower) model load
        raise BadInputFileError(input_path, "no such file")
    input_mode = args.input_mode or (example.input_mode if example else "bias")
    steps = args.steps if args.steps is not None else (example.steps if example else None)
    reset_interval = args.reset_interval
    if reset_interval is None and example is not None:
        reset_interval = example.reset_interval
    record = _record_spec(args.record, args.layers)

    _say(args, f"loading {model_path}")
    graph, load_time = api.timed_load(model_path)
    _say(args, f"loaded {len(graph.neurons)} neuron layers in {load_time:.2f} s; "
               f"reading {input_path}")
    t0 = time.perf_counter()
    result = api.simulate(
        graph, input_path, backend=args.backend, steps=steps, input_mode=input_mode,
        reset_interval=reset_interval, reset_offset=args.reset_offset, record=record,
        device=args.device, log=lambda message: _say(args, message),
    )
    wall = time.perf_counter() - t0
    _say(args, f"writing {out}")
    api.save_run(
        result, out, model_name=args.model if example else str(model_path),
        load_time_s=load_time,
        extra={"model_path": str(model_path), "input_path": str(input_path),
               "example": example.name if example else None},
    )
    print(f"{args.model}: {result.samples} sample(s) x {result.steps} steps on {result.backend}")
    print(_format_activity(api.activity(result)))
    print(f"simulation {result.sim_time_s:.3f} s (wall {wall:.3f} s), load {load_time:.3f} s")
    print(f"saved {out / 'trace.npz'} and {out / 'summary.json'}")
    return 0


def _simulate_dataset(args: argparse.Namespace, folder: Path, out: Path) -> int:
    """``simulate COMPILE_DIR --data DATA``: accuracy, spikes, events and cost on a dataset."""
    from .inference import evaluate
    from .outdir import jsonable, write_dir_atomic

    if args.backend != "hw_sim":
        raise NeurodeployError("dataset runs of a compile folder use hw_sim (event accounting "
                               "runs there); compare with Lava with neurodeploy verify")
    doc = evaluate(folder, args.data, args.samples, batch=args.batch, device=args.device,
                   progress=not args.quiet, log=lambda message: _say(args, message))
    doc = {"format": "neurodeploy-simulation", "version": 1, **doc}

    def write(tmp: Path) -> None:
        (tmp / "summary.json").write_text(json.dumps(jsonable(doc), indent=1) + "\n")

    write_dir_atomic(out, write)
    acc = doc["accuracy"]["deployed"]
    energy = doc["cost"]["energy"]["per_inference_j"]
    latency = doc["cost"]["latency"]
    print(f"{folder}: {doc['samples']} {doc['data']} samples x {doc['steps']} steps on hw_sim, "
          f"accuracy {acc:.4f}")
    print(f"  energy per inference {energy['total'] * 1e6:.3f} uJ ({energy['dynamic'] * 1e6:.3f}"
          f" dynamic), latency {latency['latency_per_inference_s'] * 1e3:.4f} ms, "
          f"{latency['throughput_fps']:.1f} inferences/s on {doc['target']}")
    sam_j = doc["cost"]["energy"]["breakdown_j"].get("sam")
    if sam_j is not None:
        print(f"  of which the on-chip SAM accumulator {sam_j * 1e6:.3f} uJ "
              f"({sam_j / energy['total']:.1%} of the total)")
    print(f"saved {out / 'summary.json'} (make the report: neurodeploy report {out})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``neurodeploy demo``: the pipeline end to end (see :mod:`neurodeploy.demo`)."""
    from .demo import run_demo, summary_lines

    doc = run_demo(args.out, samples=args.samples, eps=args.eps, progress=not args.quiet,
                   log=lambda message: _say(args, message))
    print("\n".join(summary_lines(doc)))
    print(f"saved {Path(args.out) / 'report.html'} and {Path(args.out) / 'report.json'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``neurodeploy report``: report.json/report.html of a dataset simulation folder."""
    from .reporting import build_report
    from .report import summary_text, write_report

    doc = build_report(args.dir, ann=args.ann, log=lambda message: _say(args, message))
    write_report(doc, args.dir)
    print(summary_text(doc))
    print(f"saved {Path(args.dir) / 'report.json'} and {Path(args.dir) / 'report.html'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``neurodeploy compare``: ANN vs SNN cost and accuracy."""
    from .report import comparison_lines, plot_comparison, save_figure
    from .reporting import compare

    cmp = compare(args.snn, ann=args.ann, data=args.data, samples=args.samples,
                  log=lambda message: _say(args, message))
    print("\n".join(comparison_lines(cmp)))
    if args.plot:
        save_figure(plot_comparison(cmp), args.plot)
        print(f"saved {args.plot}")
    return 0


def cmd_sam(args: argparse.Namespace) -> int:
    """``neurodeploy sam``: Spike Activation Maps (see :mod:`neurodeploy.sam`)."""
    from .sam import run_sam

    result = run_sam(args.model, args.data, args.samples, args.layers, args.gamma, args.out,
                     mode=args.mode, target=args.target, ann=args.ann, scale=args.scale,
                     alpha_mode=args.alpha_mode, calib_samples=args.calib_samples,
                     figures=args.figures, overwrite=args.overwrite,
                     log=lambda message: _say(args, message))
    print(f"SAM of {result['model']}: {result['samples']} {result['data']} samples, "
          f"gamma {result['gamma']}, mode {result['mode']}")
    for row in result["layers"]:
        parts = []
        onchip = row.get("onchip")
        if onchip:
            parts.append(f"on-chip error/spike {onchip['max_error_per_spike']:.2e} "
                         f"(bound {onchip['bound']:.2e})")
        drift = row.get("drift")
        if drift:
            parts.append(f"drift L1 {drift['l1']:.3f} IoU {drift['iou']:.2f}")
        loc = row.get("localization") or {}
        if "sam" in loc:
            parts.append(f"localization SAM {loc['sam']['error']:.3f}")
        if "snn_gradcam" in loc:
            parts.append(f"SNN Grad-CAM {loc['snn_gradcam']['error']:.3f}")
        print(f"  {row['layer']:<8} " + ", ".join(parts))
    print(f"saved {args.out}/ (sam.npz, sam.json, figures, report.html)")
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    """``neurodeploy attack``: adversarial robustness (see :mod:`neurodeploy.attacks`)."""
    from .attacks import parse_eps, run_attack, summary_text

    doc = run_attack(args.model, args.ann, attack=args.attack, eps=parse_eps(args.eps),
                     data=args.data, samples=args.samples, out=args.out, steps=args.steps,
                     step_size=args.step_size, random_start=not args.no_random_start,
                     restarts=args.restarts, surrogate=args.surrogate, seed=args.seed,
                     target=args.target, deployed=not args.no_deployed,
                     quantized=args.quantized, transfer=args.transfer,
                     sam_samples=args.sam_samples, overwrite=args.overwrite,
                     log=lambda message: _say(args, message))
    print(summary_text(doc))
    print(f"saved {args.out}/ (robustness.json, robustness.png, report.html)")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """``neurodeploy prune``: pruning and its deployed cost (see :mod:`neurodeploy.pruning`)."""
    from .pruning import parse_sparsities, run_pruning, summary_table

    doc = run_pruning(args.model, method=args.method, scope=args.scope,
                      sparsities=parse_sparsities(args.sparsity), data=args.data,
                      samples=args.samples, finetune_epochs=args.finetune_epochs,
                      target=args.target, out=args.out, seed=args.seed,
                      keep_first=args.keep_first, keep_last=args.keep_last, beta=args.beta,
                      overwrite=args.overwrite, progress=not args.quiet,
                      log=lambda message: _say(args, message))
    print(summary_table(doc))
    print(f"saved {args.out}/ (pruning.json, pruning.png, one checkpoint per sparsity)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """``neurodeploy inspect``: print the layer table of a model."""
    from .inspect import format_layer_table, layer_table

    from .frontends.load import load_model

    model_path, _ = _resolve_model(args.model)
    if args.dt is not None and not args.dt > 0:
        raise NeurodeployError(f"--dt {args.dt} must be a positive number of seconds")
    graph = load_model(model_path, dt=args.dt)
    print(format_layer_table(layer_table(graph)))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``neurodeploy train``: build a zoo config for the data and train it."""
    from .models import train as training
    from .models.data import load_splits
    from .models.zoo import default_config

    d = training.DEFAULTS
    data = args.data or d["data"]
    from .models.zoo import MODELS

    if args.model is not None and args.model not in MODELS:
        raise NeurodeployError(f"unknown model {args.model!r}; choose one of "
                               f"{', '.join(MODELS)}")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise NeurodeployError(f"{out}: output folder is not empty (use --overwrite)")
    _say(args, f"loading {data}")
    train_set, test_set = load_splits(data, image_size=args.image_size)
    options = {k: v for k, v in (("leak", args.leak), ("width", args.width)) if v is not None}
    config = default_config(
        args.model or d["model"], in_shape=train_set.in_shape,
        num_classes=train_set.num_classes,
        timesteps=args.timesteps if args.timesteps is not None else d["timesteps"],
        kind="ann" if args.ann else "snn",
        bntt=d["bntt"] if args.bntt is None else args.bntt,
        encoder=args.encoder or d["encoder"], **options)
    result = training.train(
        config, (train_set, test_set), out_dir=out,
        epochs=args.epochs if args.epochs is not None else d["epochs"],
        batch_size=args.batch_size or d["batch_size"], lr=args.lr or d["lr"],
        seed=args.seed if args.seed is not None else d["seed"], progress=not args.quiet,
        max_minutes=args.max_minutes, overwrite=args.overwrite, hire=_hire_options(args))
    print(f"{config['arch']} ({config['kind']}) on {train_set.name}: test accuracy "
          f"{result['test_accuracy']:.4f}, train accuracy {result['train_accuracy']:.4f}, "
          f"{result['seconds']:.0f} s")
    print(f"saved {out / 'model.pt'}, {out / 'config.json'} and {out / 'train.json'}")
    return 0


def _hire_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """``train``'s ``hire`` option from the ``--hire*`` flags (None: standard training)."""
    if args.hire is None:
        extra = [f for f, v in (("--hire-eps", args.hire_eps is not None),
                                ("--hire-reset-state", args.hire_reset_state),
                                ("--hire-carry-noise", args.hire_carry_noise)) if v]
        if extra:
            raise NeurodeployError(f"{', '.join(extra)} need --hire N (HIRE-SNN training)")
        return None
    hire: dict[str, Any] = {"periods": args.hire, "carry_state": not args.hire_reset_state,
                            "carry_noise": args.hire_carry_noise}
    if args.hire_eps is not None:
        hire["eps"] = args.hire_eps
    return hire


def cmd_convert(args: argparse.Namespace) -> int:
    """``neurodeploy convert``: ANN → SNN with threshold balancing."""
    from .conversion import DEFAULT_STEPS, convert

    steps = DEFAULT_STEPS
    if args.steps:
        try:
            steps = tuple(int(v) for v in _csv(args.steps))
        except ValueError:
            raise NeurodeployError(f"--steps {args.steps!r}: give integers like 10,20,50") \
                from None
    ann = Path(args.ann)
    if ann.is_dir():
        ann = ann / "model.pt"
    if not ann.exists():
        raise BadInputFileError(ann, "no such file")
    result = convert(
        ann, out_dir=args.out, calib=args.calib, calib_samples=args.calib_samples,
        method=args.method, steps=steps, eval_data=args.eval_data,
        eval_samples=args.eval_samples, reset=args.reset, encoding=args.encoding,
        scale=args.scale, overwrite=args.overwrite, progress=not args.quiet)
    _print_conversion(result)
    print(f"saved {args.out}/" + ", ".join(result.get("files", [])))
    return 0


def _print_conversion(result: dict[str, Any]) -> None:
    ann_acc = result.get("ann_accuracy")
    if ann_acc is not None:
        print(f"ANN accuracy {ann_acc:.4f}")
    print("layer thresholds: " + ", ".join(
        f"{name}={value:.4g}" for name, value in result.get("thresholds", {}).items()))
    for row in result.get("snn_accuracy", []):
        print(f"  T={row['timesteps']:>5}: SNN accuracy {row['accuracy']:.4f}")


def cmd_compile(args: argparse.Namespace) -> int:
    """``neurodeploy compile``: the compile pipeline (see :mod:`neurodeploy.compile`)."""
    from .compile import compile_model

    model_path, _ = _resolve_model(args.model)
    doc = compile_model(model_path, args.target, args.out, calib=args.calib,
                        calib_samples=args.calib_samples, timesteps=args.timesteps,
                        hard_reset=args.hard_reset, bntt=args.bntt, sam_layers=args.sam,
                        sam_gamma=args.sam_gamma, overwrite=args.overwrite,
                        log=lambda message: _say(args, message))
    print(f"{args.model} -> {doc['target']}: {doc['cores_used']} cores on "
          f"{doc['chips_used']} chip(s), {len(doc['layers'])} neuron layers, "
          f"{doc['seconds']:.2f} s")
    for row in doc["steps"]:
        print(f"  {row['step']:<10} {row['seconds']:.3f} s")
    for warning in doc["warnings"]:
        print(f"  warning: {warning}")
    print(f"saved {args.out}/" + ", ".join(doc["files"]))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """``neurodeploy verify``: stage-by-stage comparison (see :mod:`neurodeploy.verify`)."""
    from .outdir import jsonable, write_file_atomic
    from .verify import exit_code, format_table, verify

    if args.out is not None and Path(args.out).is_dir():
        raise NeurodeployError(f"--out {args.out} is a folder; give a .json file path")
    result = verify(args.dir, args.data, args.samples, lava_samples=args.lava_samples,
                    backends=[b.strip() for b in args.backends.split(",") if b.strip()],
                    log=lambda message: _say(args, message))
    print(format_table(result))
    if args.out is not None:
        text = json.dumps(jsonable(result), indent=1, allow_nan=False) + "\n"
        out = write_file_atomic(args.out, lambda tmp: tmp.write_text(text))
        print(f"saved {out}")
    return exit_code(result)


def cmd_targets(args: argparse.Namespace) -> int:
    """``neurodeploy targets``: list targets, or show one with every number's source."""
    from .targets import all_targets, load_target

    if args.target is None:
        rows = [t.summary() for t in all_targets()]
        width = max(len(r["name"]) for r in rows)
        for row in rows:
            extra = ""
            if row["kind"] == "neuromorphic":
                extra = (f" [{row['cores_per_chip']} cores/chip, {row['neurons_per_core']:,} "
                         f"neurons/core, {row['synaptic_memory_kib_per_core']} KiB synapses/core"
                         f"{', programmable neurons' if row['programmable_neurons'] else ''}]")
            print(f"{row['name'].ljust(width)}  {row['kind']:<12}  {row['description']}{extra}")
        return 0
    target = load_target(args.target)
    print(f"{target.name} ({target.kind}) from {target.path}")
    print(f"  {target.description}")
    print(f"  energy covers: {target.energy_scope}")
    print(f"  confidence: {target.confidence}")
    for section in ("resources", "precision", "energy", "time", "proxy"):
        table = getattr(target, section)
        if not table:
            continue
        print(f"[{section}]")
        for key, value in table.items():
            source = target.sources.get(f"{section}.{key}", "")
            print(f"  {key} = {value}" + (f"    # {source}" if source else ""))
    return 0


# ------------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except NeurodeployError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
