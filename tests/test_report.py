"""Tests of neurodeploy.report: the report.json schema checker, the atomic writer, the terminal
summary and report.html (rendered in headless Chromium: no console errors, every section and
plot laid out)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neurodeploy import report
from neurodeploy.ann_cost import ann_cost, compare_doc
from neurodeploy.errors import BadInputFileError, NeurodeployError
from neurodeploy.ir import Affine, Conv2d, Flatten, Graph, Input, Linear, ReLU

# ------------------------------------------------------------------------------ sample report

# A tiny 3-layer SNN (conv1 8x6x6 -> fc1 32 -> out 10) on loihi1, 8 steps, 4 samples, conv1
# split over 4 cores. Energies follow Davies 2018 Table 2 (loihi1.toml): 23.6 pJ per synaptic
# op, 81/52 pJ per active/inactive neuron update, 1.7 pJ per local spike + 3.0 pJ per E-W hop,
# 29 mW static per chip.
STEPS = 8
SYNOPS = {"conv1": 7560.0, "fc1": 5760.0, "out": 400.0}  # per inference
SPIKES = {"conv1": 180.0, "fc1": 40.0, "out": 12.5}
NEURONS = {"conv1": 288, "fc1": 32, "out": 10}
ACTIVE, INACTIVE = 900.0, 1740.0  # neuron updates per inference (sum 2640 = 330 x 8)
MESSAGES, HOPS_EW = 220.0, 40.0
STEP_TIMES = [1.10e-6, 1.25e-6, 1.31e-6, 1.28e-6, 1.30e-6, 1.27e-6, 1.29e-6, 1.30e-6]
PIPELINE = 2  # extra steps until the output layer has seen the last input


def _energy_and_latency() -> tuple[dict[str, Any], dict[str, Any]]:
    synaptic = sum(SYNOPS.values()) * 23.6e-12
    neuron = ACTIVE * 81e-12 + INACTIVE * 52e-12
    noc = MESSAGES * 1.7e-12 + HOPS_EW * 3.0e-12
    latency = sum(STEP_TIMES) + PIPELINE * STEP_TIMES[-1]
    static = 0.029 * latency
    dynamic = synaptic + neuron + noc
    energy = {"per_inference_j": {"total": dynamic + static, "dynamic": dynamic,
                                  "static": static},
              "breakdown_j": {"synaptic": synaptic, "neuron": neuron, "spike_noc": noc,
                              "static": static},
              "preset": "loihi1",
              "scope": "neuromorphic cores (synaptic ops, neuron updates, spikes, mesh hops) "
                       "plus static power of the chips used; no host, I/O or off-chip traffic"}
    lat = {"time_per_step_s": list(STEP_TIMES), "latency_per_inference_s": latency,
           "throughput_fps": 1.0 / sum(STEP_TIMES), "pipeline_depth": PIPELINE}
    return energy, lat


def _mapping() -> dict[str, Any]:
    limits = {"neurons": 1024, "synaptic_memory_bits": 1048576, "input_axons": 4096,
              "output_axons": 4096}
    cores = []
    placement = [("conv1", 0, 72, 72 * 9 * 8, 36, 32), ("conv1", 72, 72, 72 * 9 * 8, 36, 32),
                 ("conv1", 144, 72, 72 * 9 * 8, 36, 32), ("conv1", 216, 72, 72 * 9 * 8, 36, 32),
                 ("fc1", 0, 32, 32 * 288 * 8, 288, 32), ("out", 0, 10, 10 * 32 * 8, 32, 0)]
    for k, (layer, first, n, mem, ax_in, ax_out) in enumerate(placement):
        use = {"neurons": n, "synaptic_memory_bits": mem, "input_axons": ax_in,
               "output_axons": ax_out}
        cores.append({"core": k, "chip": 0, "tile": [k // 4, 0], "layer": layer,
                      "first_neuron": first, **use,
                      "utilization": {r: round(use[r] / limits[r], 6) for r in limits}})
    per_layer = [
        {"layer": "conv1", "neurons": 288, "cores": 4, "first_core": 0, "neurons_per_core": 72,
         "utilization": {"neurons": 0.070312, "synaptic_memory_bits": 0.004944,
                         "input_axons": 0.008789, "output_axons": 0.007812}},
        {"layer": "fc1", "neurons": 32, "cores": 1, "first_core": 4, "neurons_per_core": 32,
         "utilization": {"neurons": 0.03125, "synaptic_memory_bits": 0.070312,
                         "input_axons": 0.070312, "output_axons": 0.007812}},
        {"layer": "out", "neurons": 10, "cores": 1, "first_core": 5, "neurons_per_core": 10,
         "utilization": {"neurons": 0.009766, "synaptic_memory_bits": 0.002441,
                         "input_axons": 0.007812, "output_axons": 0.0}},
    ]
    return {"target": "loihi1", "cores_used": 6, "chips_used": 1, "cores_per_chip": 128,
            "mesh_tiles": [8, 4], "cores_per_tile": 4, "limits_per_core": limits,
            "per_layer": per_layer, "per_core": cores, "warnings": []}


def tiny_ann() -> Graph:
    """The SNN's ANN twin: conv 8@3x3 (pad 1) on 1x6x6, ReLU, flatten, 32, ReLU, 10."""
    rng = np.random.default_rng(0)
    return Graph.chain([
        ("input", Input((1, 6, 6))),
        ("conv1", Conv2d(rng.normal(size=(8, 1, 3, 3)), np.zeros(8), padding=1)),
        ("relu1", ReLU()),
        ("flatten", Flatten()),
        ("fc1", Affine(rng.normal(size=(32, 288)), np.zeros(32))),
        ("relu2", ReLU()),
        ("out", Linear(rng.normal(size=(10, 32)))),
    ], source="tiny_ann.onnx")


def sample_report(with_ann: bool = True) -> dict[str, Any]:
    energy, lat = _energy_and_latency()
    activity = {"per_layer": [
        {"layer": name, "neurons": NEURONS[name], "spikes_per_sample": SPIKES[name],
         "synops_per_sample": SYNOPS[name], "neuron_updates_per_sample": NEURONS[name] * STEPS}
        for name in NEURONS]}
    doc = report.make_report(
        model="tiny_snn.net", target="loihi1", steps=STEPS, samples=4,
        accuracy={"float": 0.75, "quantized": 0.75, "hw_sim": 0.5},
        mapping=_mapping(), activity=activity, energy=energy, latency=lat,
        assumptions=["energy: Davies 2018 Table 2 per-op values (pre-silicon)",
                     "latency: slowest core + NoC + barrier per step"])
    if with_ann:
        doc["ann_comparison"] = compare_doc(doc, ann_cost(tiny_ann()), {"ann": 0.75,
                                                                        "snn": 0.5})
    return report.validate_report(doc)


# ------------------------------------------------------------------------------ schema


def test_sample_report_is_valid_and_json_round_trips() -> None:
    doc = sample_report()
    assert report.report_problems(doc) == []
    assert doc["schema"] == {"name": "neurodeploy-report", "version": 1}
    again = json.loads(json.dumps(doc))
    assert report.report_problems(again) == []
    # the energy parts sum to the total, as the checker demands
    assert sum(doc["energy"]["breakdown_j"].values()) == pytest.approx(
        doc["energy"]["per_inference_j"]["total"])


def test_schema_lists_every_problem_at_once() -> None:
    doc = sample_report()
    del doc["steps"]
    doc["samples"] = "4"
    doc["schema"]["version"] = 2
    doc["accuracy"][0]["accuracy"] = 1.5
    doc["mapping"]["per_core"][2]["tile"] = [1]
    del doc["mapping"]["cores_used"]
    doc["activity"]["per_layer"][1]["synops_per_sample"] = -3
    doc["energy"]["per_inference_j"]["static"] = 1.0  # total no longer dynamic + static
    doc["latency"]["time_per_step_s"] = "fast"
    doc["assumptions"] = ["ok", 3]
    problems = report.report_problems(doc)
    expected = ["steps: missing", "samples: must be an integer", "schema: expected",
                "accuracy[0].accuracy: 1.5 is above 1", "mapping.per_core[2].tile: must be two",
                "mapping.cores_used: missing",
                "activity.per_layer[1].synops_per_sample: -3 is below 0",
                "energy.per_inference_j: total", "latency.time_per_step_s: must be",
                "assumptions: must hold strings only"]
    for fragment in expected:
        assert any(p.startswith(fragment) for p in problems), (fragment, problems)
    with pytest.raises(NeurodeployError, match=r"\(1\d problems\)") as err:
        report.validate_report(doc)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.pop("energy"), "energy: missing"),
    (lambda d: d["energy"].pop("preset"), "energy.preset: missing"),
    (lambda d: d["energy"].update(scope=None), "energy.scope: must be a string, got null"),
    (lambda d: d["mapping"].update(per_core={}), "mapping.per_core: must be a list"),
    (lambda d: d["mapping"]["per_core"][0].update(chip=True), "mapping.per_core[0].chip"),
    (lambda d: d["energy"]["breakdown_j"].update(neuron=1e-6), "energy.breakdown_j: parts sum"),
    (lambda d: d["latency"].update(throughput_fps=float("nan")), "latency.throughput_fps"),
    (lambda d: d["ann_comparison"]["break_even"].update(band=[0.15]),
     "ann_comparison.break_even.band"),
    (lambda d: d.update(accuracy=[{"stage": "float"}]), "accuracy[0].accuracy: missing"),
    (lambda d: d.update(model=3), "model: must be a string, got 3"),
])
def test_schema_catches_each_missing_key_or_wrong_type(mutate: Any, fragment: str) -> None:
    doc = sample_report()
    mutate(doc)
    problems = report.report_problems(doc)
    assert any(p.startswith(fragment) for p in problems), problems


def test_null_sections_are_allowed_and_non_objects_are_not() -> None:
    doc = sample_report()
    for key in ("mapping", "activity", "energy", "latency", "ann_comparison"):
        doc[key] = None
    doc["accuracy"] = []
    assert report.report_problems(doc) == []
    assert report.report_problems([1, 2]) == ["report: must be a JSON object, got a list"]


def test_load_report_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(BadInputFileError, match="not valid JSON"):
        report.load_report(tmp_path)
    (tmp_path / "report.json").write_text(json.dumps({"schema": report.SCHEMA}))
    with pytest.raises(BadInputFileError, match="model: missing"):
        report.load_report(tmp_path / "report.json")
    with pytest.raises(BadInputFileError, match="no such file"):
        report.load_report(tmp_path / "missing.json")


# ------------------------------------------------------------------------------ writing


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_report_creates_both_files(tmp_path: Path) -> None:
    doc = sample_report()
    out = report.write_report(doc, tmp_path / "new" / "rep")
    assert _listing(out) == ["report.html", "report.json"]
    assert report.load_report(out) == doc
    text = (out / "report.html").read_text(encoding="utf-8")
    for section in report.SECTIONS:
        assert (f'<section id="{section.id}">' in text) == section.shown(doc)
    assert text.count("<svg") == 6  # accuracy, activity, energy, mesh, time, ANN vs SNN


def test_html_is_self_contained(tmp_path: Path) -> None:
    text = report.render_html(sample_report())
    assert "<script" not in text and "<link" not in text and "<img" not in text
    assert not re.search(r"\bsrc\s*=", text)
    # only in-page anchors and inline data (matplotlib embeds the colour bar as a data: PNG)
    assert not re.search(r"href\s*=\s*[\"'](?!#|data:)", text)
    assert not re.search(r"url\((?!#)", text)  # only clip-path references
    assert not re.search(r"@import|@font-face", text)


def test_write_report_adds_to_a_simulation_folder(tmp_path: Path) -> None:
    sim = tmp_path / "run"
    sim.mkdir()
    (sim / "summary.json").write_text('{"steps": 8}\n')
    (sim / "trace.npz").write_bytes(b"npz")
    report.write_report(sample_report(), sim)
    assert _listing(sim) == ["report.html", "report.json", "summary.json", "trace.npz"]
    second = sample_report(with_ann=False)
    report.write_report(second, sim)  # a previous report is replaced
    assert report.load_report(sim)["ann_comparison"] is None
    assert "No ANN was given" in (sim / "report.html").read_text(encoding="utf-8")
    assert (sim / "summary.json").read_text() == '{"steps": 8}\n'
    assert _listing(sim) == ["report.html", "report.json", "summary.json", "trace.npz"]


def test_write_report_never_replaces_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text('{"mine": true}')
    with pytest.raises(NeurodeployError, match="not written by neurodeploy"):
        report.write_report(sample_report(), tmp_path)
    assert _listing(tmp_path) == ["report.json"]
    assert (tmp_path / "report.json").read_text() == '{"mine": true}'
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NeurodeployError, match="not a folder"):
        report.write_report(sample_report(), target)


def test_invalid_report_writes_nothing(tmp_path: Path) -> None:
    doc = sample_report()
    doc["steps"] = 0
    with pytest.raises(NeurodeployError, match="steps: 0 is below 1"):
        report.write_report(doc, tmp_path / "out")
    assert _listing(tmp_path) == []


def test_failed_rename_restores_the_previous_report(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "render_html", lambda doc: f"{report._GENERATOR}{doc['model']}")
    first = sample_report(with_ann=False)
    report.write_report(first, tmp_path)
    (tmp_path / "trace.npz").write_bytes(b"npz")
    before = {n: (tmp_path / n).read_bytes() for n in ("report.json", "report.html")}
    real = os.replace

    def failing(src: Any, dst: Any) -> None:
        if Path(dst).name == "report.html" and ".tmp-" in Path(src).name:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(report.os, "replace", failing)
    second = sample_report(with_ann=False)
    second["model"] = "other.net"
    with pytest.raises(OSError, match="disk full"):
        report.write_report(second, tmp_path)
    monkeypatch.undo()
    assert _listing(tmp_path) == ["report.html", "report.json", "trace.npz"]  # no temp files
    assert {n: (tmp_path / n).read_bytes() for n in before} == before


def test_failed_render_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(doc: Any) -> str:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(report, "render_html", broken)
    with pytest.raises(RuntimeError):
        report.write_report(sample_report(), tmp_path / "a" / "b")
    assert _listing(tmp_path) == []


# ------------------------------------------------------------------------------ text and sections


def test_si_formatting() -> None:
    assert report.si(1.234e-6, "J") == "1.23 µJ"
    assert report.si(0.0231, "W") == "23.1 mW"
    assert report.si(999.96e-9, "s") == "1 µs"
    assert report.si(12_500.0, "fps") == "12.5 kfps"
    assert report.si(0, "J") == "0 J"
    assert report.si(None, "J") == "—"
    assert report.si(-2e-12, "J") == "-2 pJ"


def test_summary_text_states_the_key_numbers() -> None:
    doc = sample_report()
    text = report.summary_text(doc)
    energy, lat = _energy_and_latency()
    total = energy["per_inference_j"]["total"]
    assert text.splitlines()[0] == "tiny_snn.net on loihi1: 8 steps per inference, 4 samples"
    assert "float 75.0% · quantized 75.0% · hw_sim 50.0%" in text
    assert "6 cores on 1 chip" in text
    assert "232 spikes, 13,720 synaptic ops, 2,640 neuron updates per inference" in text
    assert f"{report.si(total, 'J')} per inference" in text
    assert f"{report.si(sum(STEP_TIMES) / 8, 's')} per step" in text
    assert "preset loihi1" in text and "scope: neuromorphic cores" in text
    assert re.search(r"cpu: memory-aware \S+ \S+ \(\S+× the SNN\)", text)
    assert "the break-even band 0.15–1.38" in text
    assert len(text.splitlines()) <= 16


def test_sections_without_data_say_so() -> None:
    doc = sample_report(with_ann=False)
    for key in ("mapping", "activity", "energy", "latency"):
        doc[key] = None
    doc["accuracy"] = [{"stage": "float", "accuracy": None}]
    doc["assumptions"] = []
    text = report.render_html(report.validate_report(doc))
    for message in ("No stage has a known accuracy", "No per-layer activity",
                    "No energy estimate", "No mapping in this report", "No latency estimate",
                    "No ANN was given", "No assumptions were recorded"):
        assert message in text
    assert "<svg" not in text
    summary = report.summary_text(doc)
    assert summary.splitlines()[0].startswith("tiny_snn.net on loihi1")
    doc["mapping"] = {"cores_used": 0, "chips_used": 0, "per_layer": [], "per_core": []}
    assert "The mapping lists no cores" in report.render_html(doc)
    doc["mapping"] = _mapping()
    del doc["mapping"]["mesh_tiles"]
    assert "no mesh geometry" in report.render_html(doc)


def test_register_section_inserts_before_assumptions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "SECTIONS", list(report.SECTIONS))
    report.register_section(report.Section("sam", "Spike activation maps",
                                           lambda doc: "<p>heatmaps <b>here</b></p>"))
    report.register_section(report.Section("extra", "Extra", lambda doc: "<p>x</p>"),
                            after="overview")
    ids = [s.id for s in report.SECTIONS]
    assert ids[1] == "extra" and ids[-2:] == ["sam", "assumptions"]
    text = report.render_html(sample_report(with_ann=False))
    assert '<section id="sam"><h2>Spike activation maps</h2><p>heatmaps <b>here</b></p>' in text
    assert '<a href="#sam">' in text
    with pytest.raises(NeurodeployError, match="no report section 'nope'"):
        report.register_section(report.Section("y", "Y", lambda d: ""), after="nope")


def test_optional_section_only_where_its_data_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """A section with a ``key`` appears only in documents holding that key."""
    monkeypatch.setattr(report, "SECTIONS", list(report.SECTIONS))
    report.register_section(report.Section("opt", "Optional", lambda doc: "<p>opt</p>",
                                           key="opt"))
    plain = report.render_html(sample_report(with_ann=False))
    assert 'id="opt"' not in plain and '<a href="#opt">' not in plain
    with_data = report.render_html({**sample_report(with_ann=False), "opt": {"x": 1}})
    assert '<section id="opt"><h2>Optional</h2><p>opt</p>' in with_data


def test_mesh_plot_places_every_core_in_its_tile() -> None:
    from matplotlib.patches import Rectangle

    mapping = _mapping()
    fig, layers = report.plot_mesh(mapping)
    assert layers == ["conv1", "fc1", "out"]
    rects = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    # 1 chip outline + 8 x 4 tiles + 128 core slots (grey) + 6 used cores
    assert len(rects) == 1 + 32 + 128 + 6
    assert all(r.get_facecolor()[:3] == pytest.approx((0.894, 0.894, 0.894), abs=1e-3)
               for r in rects[33:161])
    cores = rects[161:]
    # cores 0-3 fill tile (0, 0) as a 2x2 block, cores 4-5 the top row of tile (1, 0);
    # tile row 0 is drawn at the top (y from 3 to 4)
    corners = [(round(r.get_x(), 2), round(r.get_y(), 2)) for r in cores]
    assert corners == [(0.05, 3.51), (0.51, 3.51), (0.05, 3.05), (0.51, 3.05),
                       (1.05, 3.51), (1.51, 3.51)]
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["1", "1", "1", "1", "2", "3"]


# ------------------------------------------------------------------------------ Chromium

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
                  "chrome")


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of a Chromium/Chrome executable. Skips when none is installed, except in CI
    (``CI`` set), where the test fails instead. ``NEURODEPLOY_CHROMIUM`` picks one."""
    chosen = os.environ.get("NEURODEPLOY_CHROMIUM")
    found = shutil.which(chosen) if chosen else next(
        (p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    if not found:
        message = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


class _WebSocket:
    """The few bits of RFC 6455 the DevTools protocol needs (stdlib only): text frames out
    (masked), text/continuation/ping/close frames in."""

    def __init__(self, url: str, timeout: float) -> None:
        m = re.match(r"ws://([^:/]+):(\d+)(/.*)", url)
        assert m, url
        self.sock = socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {m.group(3)} HTTP/1.1\r\nHost: {m.group(1)}:{m.group(2)}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode(errors="replace"))

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            data += chunk
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        n = len(payload)
        head = bytes([0x81])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 8:
                raise ConnectionError("DevTools closed the connection")
            if opcode == 9:  # ping -> pong
                self.sock.sendall(bytes([0x8A, 0x80 | len(data)]) + b"\0\0\0\0" + data)
                continue
            if opcode in (0, 1, 2):
                message += data
                if b0 & 0x80:
                    return message.decode()

    def close(self) -> None:
        self.sock.close()


class Browser:
    """Headless Chromium driven over the DevTools protocol: load a page, collect console
    errors, uncaught exceptions and failed loads, evaluate JavaScript, take screenshots."""

    FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             "--disable-extensions", "--remote-debugging-port=0")

    def __init__(self, exe: str, profile: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [exe, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.ws: _WebSocket | None = None
        try:
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (port_file.is_file() and port_file.read_text().strip()):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("Chromium did not open its DevTools port")
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                        timeout=timeout) as resp:
                pages = [t for t in json.load(resp) if t.get("type") == "page"]
            self.ws = _WebSocket(pages[0]["webSocketDebuggerUrl"], timeout)
            self.next_id = 0
            self.events: list[dict[str, Any]] = []
            for domain in ("Runtime", "Log", "Page"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.close()
            raise

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self.ws is not None
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event: str) -> None:
        assert self.ws is not None
        deadline = time.monotonic() + self.timeout
        while not any(e["method"] == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(event)
            self.events.append(json.loads(self.ws.recv()))

    def load(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        self.evaluate("new Promise(r => setTimeout(r, 200))")  # let late errors arrive

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors/assertions, uncaught exceptions and error log entries (failed
        resource loads, blocked requests) since the last :meth:`load`."""
        found = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error",
                                                                              "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                     for a in p.get("args", [])))
            elif e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                found.append("exception: " + str(d.get("exception", {}).get("description")
                                                 or d.get("text")))
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                found.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return found

    def screenshot(self, path: Path, width: int = 1280) -> None:
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1,
                                                         "mobile": False})
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def browser(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    b = Browser(chromium, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def test_browser_check_catches_errors(browser: Browser, tmp_path: Path) -> None:
    """Negative control: the error collection sees console errors, exceptions, failed loads."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img src="missing.png"><script>'
                    'console.error("deliberate"); notDefined();</script></body></html>')
    browser.load(page.as_uri())
    errors = browser.errors()
    assert any("deliberate" in e for e in errors), errors
    assert any("notDefined" in e for e in errors), errors
    assert any("missing.png" in e for e in errors), errors


def test_report_html_renders_in_chromium(browser: Browser, tmp_path: Path) -> None:
    out = report.write_report(sample_report(), tmp_path / "rep")
    browser.call("Emulation.setDeviceMetricsOverride", {"width": 1000, "height": 800,
                                                        "deviceScaleFactor": 1, "mobile": False})
    browser.load((out / "report.html").as_uri())
    assert browser.errors() == []
    layout = browser.evaluate("""(() => {
        const secs = [...document.querySelectorAll('main > section')];
        return {
          title: document.title,
          sections: secs.map(s => [s.id, s.querySelector('h2').textContent,
                                   s.getBoundingClientRect().height]),
          svgs: [...document.querySelectorAll('figure svg')].map(s => {
              const r = s.getBoundingClientRect();
              return [s.closest('section').id, Math.round(r.width), Math.round(r.height)]; }),
          overflow: document.documentElement.scrollWidth - window.innerWidth,
          cards: [...document.querySelectorAll('.card .v')].map(c => c.textContent),
          nodata: document.querySelectorAll('.nodata').length,
        }; })()""")
    assert layout["title"] == "neurodeploy report: tiny_snn.net on loihi1"
    doc = sample_report()
    assert [s[0] for s in layout["sections"]] == [s.id for s in report.SECTIONS if s.shown(doc)]
    assert all(h > 40 for _, _, h in layout["sections"]), layout["sections"]
    assert [s[0] for s in layout["svgs"]] == ["accuracy", "activity", "energy", "mesh", "time",
                                              "ann"]
    assert all(w > 150 and h > 80 for _, w, h in layout["svgs"]), layout["svgs"]
    assert layout["overflow"] <= 0
    assert layout["nodata"] == 0
    energy, _ = _energy_and_latency()
    assert report.si(energy["per_inference_j"]["total"], "J") in layout["cards"]
    shot = tmp_path / "report.png"
    browser.screenshot(shot)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width == 1280 and height > 1500
    if os.environ.get("NEURODEPLOY_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["NEURODEPLOY_KEEP_SCREENSHOT"])


def test_make_report_takes_numpy_values_and_accountant_activity() -> None:
    """Numpy scalars become JSON types; the accountant's per-layer counts (per sample) map
    onto the report's activity rows (neuron updates = active + inactive)."""
    accountant = {"per_layer": {
        "lif1": {"neurons": 288, "cores": 4, "input_spikes": 120.0, "syn_ops": 7560.0,
                 "active_updates": 800.0, "inactive_updates": 1504.0, "output_spikes": 180.0,
                 "messages_out": 200.0, "hops_ew": 30.0, "hops_ns": 10.0},
        "lif2": {"neurons": 32, "cores": 1, "input_spikes": 200.0, "syn_ops": 5760.0,
                 "active_updates": 100.0, "inactive_updates": 156.0, "output_spikes": 40.0,
                 "messages_out": 20.0, "hops_ew": 0.0, "hops_ns": 0.0}},
        "totals_per_sample": {"syn_ops": 13320.0}, "counting_rules": ["rule"]}
    activity = report.activity_section(accountant)
    assert activity["per_layer"][0] == {
        "layer": "lif1", "neurons": 288, "cores": 4, "spikes_per_sample": 180.0,
        "synops_per_sample": 7560.0, "neuron_updates_per_sample": 2304.0,
        "active_updates_per_sample": 800.0, "input_spikes_per_sample": 120.0,
        "messages_per_sample": 200.0, "hops_per_sample": 40.0}
    assert activity["counting_rules"] == ["rule"]
    doc = report.make_report(model="m", target="loihi2", steps=np.int64(8), samples=np.int32(2),
                             accuracy={"hw_sim": np.float32(0.5)}, activity=activity)
    assert type(doc["steps"]) is int and type(doc["accuracy"][0]["accuracy"]) is float
    assert "tile hops" in report.render_html(doc)
