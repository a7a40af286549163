"""Every runnable example in ``README.md`` and ``docs/*.md`` runs, and its shown output is real.

Convention (also stated in ``docs/index.md``):

* A fenced block tagged ``python`` is executed. The blocks of one page share one namespace
  and run in page order.
* A fenced block tagged ``console`` is a shell session. Each ``$ `` line is a command (a
  trailing ``\\`` continues it on the next line). A plain ``neurodeploy ...`` command runs
  through the CLI's entry point in the test's process (it saves a torch import per command);
  anything else runs with bash. The lines after a command are an excerpt of its output:
  * each shown line must appear in the real output (stdout or stderr) once every number is
    replaced by ``#`` and runs of spaces are collapsed, so timings may differ but wording,
    units and layout may not;
  * a line ``...`` stands for left-out lines;
  * ``/path/to/neurodeploy`` stands for the repository's folder;
  * the command must exit with 0, or with 2 when its shown output holds a
    ``neurodeploy: error:`` line;
  * ``$ echo $?`` checks the previous command's exit status against the number shown.
* Blocks with any other tag (``sh``, ``text``, none) are synopses or illustrations and never
  run.
* An HTML comment on the lines just above a block changes this:
  * ``<!-- not-run: REASON -->`` skips the block. A reason is required (for example: takes
    minutes; needs your own files).
  * ``<!-- needs: lava -->`` marks a block that needs Lava and lava-dl's example files. Where
    they are missing the block is left out (so later blocks must not depend on it), except in
    CI (``CI`` set), where the test fails.

Every page runs in its own temporary folder, holding ``models`` and ``targets`` (links to the
repository's folders) and ``.venv/bin`` (a link to this interpreter's ``bin``). So the examples are
written as if run from the repository root, and their outputs go to folders like ``out/``.
The venv's ``bin`` comes first on ``PATH``, so ``neurodeploy`` is this checkout's CLI.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = ("python", "console")
MARKER = re.compile(r"^<!--\s*(?P<key>[a-z-]+)\s*:\s*(?P<value>.*?)\s*-->$")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")
COMMAND_TIMEOUT_S = 600


@dataclass
class Block:
    """One fenced code block of a Markdown page."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}" \
               f":{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUNNABLE and "not-run" not in self.markers


def parse_blocks(text: str, path: Path = ROOT / "page.md") -> list[Block]:
    """The fenced code blocks of a Markdown ``text`` with the markers just above each.

    Raises ``ValueError`` for an unknown marker, a ``not-run`` without a reason, a ``needs``
    other than ``lava``, or an unclosed fence.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: dict[str, str] = {}
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        m = FENCE.match(lines[i])
        if m is None:
            marker = MARKER.match(stripped)
            if marker is not None and marker["key"] in ("not-run", "needs"):
                key, value = marker["key"], marker["value"]
                if key == "not-run" and not value:
                    raise ValueError(f"{path}:{i + 1}: <!-- not-run: ... --> needs a reason")
                if key == "needs" and value != "lava":
                    raise ValueError(f"{path}:{i + 1}: unknown requirement {value!r} "
                                     "(known: lava)")
                pending[key] = value
            elif stripped.startswith("<!--") and re.match(r"<!--\s*(not[-_ ]?run|needs)\b",
                                                          stripped):
                raise ValueError(f"{path}:{i + 1}: malformed marker {stripped!r}")
            elif stripped:
                pending = {}
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = FENCE.match(lines[i])
            if (close is not None and close["fence"][0] == fence[0]
                    and len(close["fence"]) >= len(fence) and not close["info"]):
                break
            line = lines[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            i += 1
        else:
            raise ValueError(f"{path}:{start + 1}: code block never closed")
        blocks.append(Block(path, start + 1, m["info"].lower(), "\n".join(body) + "\n",
                            dict(pending)))
        pending = {}
        i += 1
    return blocks


def pages() -> list[Path]:
    """README.md and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# ------------------------------------------------------------------------------ console


@dataclass
class Command:
    """One ``$`` command of a console block and the output shown after it."""

    line: int
    command: str
    shown: list[str]


def parse_console(block: Block) -> list[Command]:
    """The commands of a ``console`` block; text before the first ``$`` is an error."""
    commands: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            cmd, start = line[2:], i
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1].rstrip() + " " + lines[i].strip()
            commands.append(Command(block.line + 1 + start, cmd.strip(), []))
        elif commands:
            commands[-1].shown.append(line)
        elif line.strip():
            raise ValueError(f"{block.where}: console output before the first '$ ' command")
        i += 1
    return commands


def normalize(line: str) -> str:
    """A line with numbers as ``#`` and whitespace collapsed."""
    return " ".join(NUMBER.sub("#", line).split())


def output_lines(*texts: str) -> set[str]:
    """Normalized lines of outputs (progress bars split on carriage returns)."""
    found: set[str] = set()
    for text in texts:
        for line in re.split(r"[\r\n]+", text):
            if line.strip():
                found.add(normalize(line))
    return found


REPO = "/path/to/neurodeploy"


def missing_lines(shown: list[str], stdout: str, stderr: str) -> list[str]:
    """Shown output lines that the real output lacks (``...`` and blank lines are skipped;
    the repository's folder is written as ``/path/to/neurodeploy``)."""
    real = output_lines(stdout.replace(str(ROOT), REPO), stderr.replace(str(ROOT), REPO))
    return [line for line in shown
            if line.strip() and line.strip() != "..." and normalize(line) not in real]


def expected_status(cmd: Command, following: Command | None) -> int:
    """Exit status a command must have: the ``echo $?`` after it, else 2 when its output
    shows a neurodeploy error, else 0."""
    if following is not None and following.command == "echo $?":
        values = [line.strip() for line in following.shown if line.strip()]
        if len(values) != 1 or not values[0].isdigit():
            raise ValueError(f"line {following.line}: 'echo $?' must show one number")
        return int(values[0])
    if any(line.startswith("neurodeploy: error:") for line in cmd.shown):
        return 2
    return 0


SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?~{}\\]|^\w+=")


def cli_argv(command: str) -> list[str] | None:
    """The arguments of a plain ``neurodeploy ...`` (or ``.venv/bin/neurodeploy ...``)
    command without shell syntax, else None."""
    if SHELL_SYNTAX.search(command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or words[0] not in ("neurodeploy", ".venv/bin/neurodeploy"):
        return None
    return words[1:]


def run_command(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """``(status, stdout, stderr)`` of one command. A plain ``neurodeploy`` command runs
    in this process through the CLI's entry point (``neurodeploy.cli.main``, what the
    ``neurodeploy`` script calls), which saves a torch import per command; anything else
    runs with bash."""
    argv = cli_argv(command)
    if argv is None:
        proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, text=True,
                              capture_output=True, timeout=COMMAND_TIMEOUT_S)
        return proc.returncode, proc.stdout, proc.stderr
    from neurodeploy.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def run_console(block: Block, cwd: Path, env: dict[str, str]) -> None:
    """Run the commands of a console block in ``cwd``; fail on a wrong status or output."""
    commands = parse_console(block)
    for k, cmd in enumerate(commands):
        if cmd.command == "echo $?":
            continue  # checked with the command before it
        following = commands[k + 1] if k + 1 < len(commands) else None
        want = expected_status(cmd, following)
        status, stdout, stderr = run_command(cmd.command, cwd, env)
        report = (f"{block.path.name}:{cmd.line}: $ {cmd.command}\n--- stdout\n{stdout}"
                  f"--- stderr\n{stderr[-4000:]}")
        if status != want:
            pytest.fail(f"exit status {status}, expected {want}\n{report}")
        missing = missing_lines(cmd.shown, stdout, stderr)
        if missing:
            pytest.fail("shown output not in the real output (numbers aside):\n  "
                        + "\n  ".join(missing) + f"\n{report}")


# ------------------------------------------------------------------------------ python


def run_python(block: Block, namespace: dict) -> None:
    """Execute a python block in ``namespace`` (shared by the blocks of one page)."""
    code = compile(textwrap.dedent(block.text), block.where, "exec")
    exec(code, namespace)  # noqa: S102 - the docs' own examples


# ------------------------------------------------------------------------------ the tests


def _lava_available() -> bool:
    """Whether Lava imports and lava-dl's example networks are installed."""
    from neurodeploy import examples
    from neurodeploy.backends import lava as lava_backend
    from neurodeploy.errors import MissingExtraError

    if not lava_backend.available():
        return False
    try:
        return examples.resolve("tinynet").path.is_file()
    except MissingExtraError:
        return False


def _workdir(tmp_path: Path) -> Path:
    """A folder that looks like the repository root to the examples."""
    for name in ("models", "targets"):
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "bin").symlink_to(Path(sys.executable).parent,
                                            target_is_directory=True)
    return tmp_path


def _runnable_pages() -> list[Path]:
    return [p for p in pages() if any(b.runs for b in parse_blocks(p.read_text("utf-8"), p))]


@pytest.mark.parametrize("page", _runnable_pages(), ids=lambda p: p.name)
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every runnable block of one page runs, in order, in a fresh working folder."""
    blocks = [b for b in parse_blocks(page.read_text("utf-8"), page) if b.runs]
    lava_blocks = [b for b in blocks if b.markers.get("needs") == "lava"]
    if lava_blocks and not _lava_available():
        message = (f"{page.name}: examples at lines {', '.join(str(b.line) for b in lava_blocks)}"
                   " need Lava and lava-dl's example files")
        if os.environ.get("CI"):
            pytest.fail(message)
        blocks = [b for b in blocks if b not in lava_blocks]
        if not blocks:
            pytest.skip(message)
    cwd = _workdir(tmp_path)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MPLBACKEND"] = "Agg"
    env.pop("PYTHONPATH", None)
    monkeypatch.chdir(cwd)
    namespace: dict = {"__name__": "__docs__"}
    for block in blocks:
        if block.lang == "python":
            run_python(block, namespace)
        else:
            run_console(block, cwd, env)


# ------------------------------------------------------------------------------ the convention


def test_parse_blocks_reads_markers_and_languages() -> None:
    text = textwrap.dedent("""\
        # Page

        ```python
        x = 1
        ```

        <!-- not-run: takes ten minutes -->
        ```console
        $ neurodeploy train --out run1
        ```

        <!-- needs: lava -->

        ```console
        $ neurodeploy simulate tinynet --out t
        ```

        text between resets the markers
        ```sh
        make demo
        ```
        - item

          ```python
          y = 2
          ```
        """)
    blocks = parse_blocks(text)
    assert [(b.line, b.lang, b.runs) for b in blocks] == [
        (3, "python", True), (8, "console", False), (14, "console", True), (19, "sh", False),
        (24, "python", True)]
    assert blocks[1].markers == {"not-run": "takes ten minutes"}
    assert blocks[2].markers == {"needs": "lava"}
    assert blocks[3].markers == {}
    assert blocks[4].text == "y = 2\n"  # list indentation removed


@pytest.mark.parametrize("bad", [
    "<!-- not-run: -->\n```python\nx\n```\n",
    "<!-- not-run -->\n```python\nx\n```\n",
    "<!-- needs: gpu -->\n```python\nx\n```\n",
    "```python\nx\n",
])
def test_parse_blocks_rejects_bad_markers(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_blocks(bad)


def test_console_commands_statuses_and_excerpts() -> None:
    block = Block(ROOT / "page.md", 10, "console", textwrap.dedent("""\
        $ neurodeploy simulate pilotnet --input nope.npy \\
            --out x
        neurodeploy: error: nope.npy: no such file
        $ echo $?
        2
        $ neurodeploy targets
        loihi2  neuromorphic  ...
        ...
        """))
    cmds = parse_console(block)
    assert [(c.line, c.command) for c in cmds] == [
        (11, "neurodeploy simulate pilotnet --input nope.npy --out x"), (14, "echo $?"),
        (16, "neurodeploy targets")]
    assert expected_status(cmds[0], cmds[1]) == 2
    assert expected_status(cmds[2], None) == 0
    assert expected_status(Command(1, "x", ["neurodeploy: error: bad"]), None) == 2
    # numbers may differ, words and units may not
    assert missing_lines(["  load       2.348 s", "..."], "  load  0.91 s\n", "") == []
    assert missing_lines(["accuracy 0.9750"], "accuracy 97.5%\n", "") == ["accuracy 0.9750"]
    assert missing_lines(["x 1 s"], "", "bar 10%\rx 3 s\r") == []
    with pytest.raises(ValueError):
        parse_console(Block(ROOT / "p.md", 1, "console", "output first\n$ ls\n"))


def test_plain_neurodeploy_commands_run_in_process_others_in_bash(tmp_path: Path) -> None:
    assert cli_argv("neurodeploy targets loihi2") == ["targets", "loihi2"]
    assert cli_argv('.venv/bin/neurodeploy sam --out "a b"') == ["sam", "--out", "a b"]
    for shell in ("neurodeploy targets | head", "X=1 neurodeploy targets", "ls out",
                  "neurodeploy targets > t.txt", "neurodeploy inspect $(cat f)"):
        assert cli_argv(shell) is None, shell
    # both paths report the status and the two streams
    status, out, err = run_command("neurodeploy targets nope.toml", tmp_path, dict(os.environ))
    assert status == 2 and out == "" and err.startswith("neurodeploy: error: nope.toml")
    status, out, err = run_command("echo hi; echo oops >&2; exit 3", tmp_path, dict(os.environ))
    assert (status, out, err) == (3, "hi\n", "oops\n")


# ------------------------------------------------------------------------------ links


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as ``-``
    (a repeated heading also gets ``-1``, ``-2``, ...)."""
    counts: dict[str, int] = {}
    found: set[str] = set()
    in_code = False
    for line in page.read_text("utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", m[1].lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        found.add(f"{slug}-{n}" if n else slug)
    return found


def test_anchors_follow_github(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A `code` title: yes!\n## A `code` title: yes!\n### 3. Verify\n"
                    "```\n# not a heading\n```\n", "utf-8")
    assert anchors(page) == {"a-code-title-yes", "a-code-title-yes-1", "3-verify"}


def test_relative_links_point_at_existing_files_and_headings() -> None:
    """Links between pages (and to repository files) resolve, and so do their ``#anchors``
    into Markdown pages."""
    broken = []
    for page in pages():
        in_code = False
        for n, line in enumerate(page.read_text("utf-8").splitlines(), 1):
            if FENCE.match(line):
                in_code = not in_code
            if in_code:
                continue
            for m in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
                target, _, anchor = m["target"].partition("#")
                if re.match(r"^[a-z]+:", target):
                    continue
                path = page.parent / target if target else page
                if not path.exists():
                    broken.append(f"{page.relative_to(ROOT)}:{n}: {m['target']} (no such file)")
                elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                    broken.append(f"{page.relative_to(ROOT)}:{n}: {m['target']} (no such heading)")
    assert broken == []
