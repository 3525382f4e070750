"""The README and docs/ as a newcomer uses them: the Python examples run, every command they show parses (options,
configs, make targets, modules), every link resolves, and the README stays short."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from conftest import ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDERS = {"my.yaml": "configs/ssd_folder.yaml"}  # files the README asks you to create


def _example(marker: str) -> str:
    return re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", README.read_text(), re.S)[1]


def test_readme_is_a_five_minute_read():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"
    for section in ("## Install", "## Two commands", "## Your own folder in four commands", "## Using it from Python",
                    "## Where to read more"):  # fmt: skip
        assert section in lines


def test_readme_keeps_exactly_two_setup_commands_and_ci_runs_one():
    block = re.search(r"## Two commands\n.*?```bash\n(.*?)```", README.read_text(), re.S)[1]
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_readme_python_example(tmp_path, monkeypatch):
    """Needs the Fashion-MNIST data `make data` installs: CI fails here (not skips) when it is missing."""
    assert Path("/usr/share/datasets/fashion-mnist").is_dir(), "run `make data` first: the README example needs it"
    monkeypatch.chdir(tmp_path)  # the example writes sample grids under the working directory
    namespace = {}
    exec(compile(_example("readme-example"), "README.md", "exec"), namespace)
    assert tuple(namespace["images"].shape) == (8, 1, 32, 32)
    assert namespace["images"].abs().max() <= 1
    assert (Path(namespace["root"]) / "checkpoints/last.ckpt").is_file()  # as its comment says


def test_readme_pretrained_example(tmp_path, monkeypatch):
    import torch

    from scale_space_diffusion import DDPM, Optimization, Sampling, UNet

    model = DDPM(UNet(16, 1, None, 8, (1, 2), 1, (), 4), optim=Optimization(ema_decay=None), sampling=Sampling(steps=3))
    model.save_pretrained(tmp_path / "my_model")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(_example("readme-example-pretrained"), "README.md", "exec"), namespace)
    assert len(namespace["images"]) == 16 and namespace["images"][0].size == (16, 16)
    assert tuple(namespace["x0_hat"].shape) == (4, 1, 16, 16) and torch.isfinite(namespace["x0_hat"]).all()


def test_readme_denoiser_example():
    """The samplers run from a Denoiser, with no LightningModule (issue 26)."""
    import torch

    namespace = {}
    exec(compile(_example("readme-example-denoiser"), "README.md", "exec"), namespace)
    assert tuple(namespace["x"].shape) == (4, 1, 32, 32) and torch.isfinite(namespace["x"]).all()
    assert not any(isinstance(v, type) and v.__name__ == "DiffusionModule" for v in namespace.values())


def commands() -> list[tuple[str, str]]:
    """(page, command) for every shell line in a ```bash block and every inline `ssd ...`/`make ...` span."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                if line and not line.startswith("#"):
                    found += [(page.name, part.strip()) for part in line.split("&&")]
        found += [(page.name, c) for c in re.findall(r"`((?:ssd|make|python -m) [^`]+)`", text)]
    return found


COMMANDS = commands()


@pytest.fixture(scope="module")
def ssd_parser():
    from scale_space_diffusion.cli import run

    return run(parse_only=True)


def _tokens(command: str) -> list[str]:
    command = re.sub(r"\[(--[^]]+)\]", r"\1", command)  # [--option value]: optional, shown as written
    words = shlex.split(command.replace("<", "'<").replace(">", ">'"))
    return [PLACEHOLDERS.get(w, w) for w in words]


@pytest.mark.parametrize("page, command", COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_every_command_in_the_readme_and_docs_parses(page, command, ssd_parser):
    from scale_space_diffusion.cli import SUBCOMMANDS
    from scale_space_diffusion.cli_folders import export_parser, sample_parser
    from scale_space_diffusion.metrics.score import build_parser

    words = _tokens(command)
    head, rest = words[0].replace(".venv/bin/", ""), words[1:]
    if head == "make":
        targets = re.findall(r"^([a-zA-Z_-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert rest[0] in targets, f"{page}: `{command}`: no make target {rest[0]!r}"
    elif head in ("python", "python3", ".venv/bin/python") and rest[:1] == ["-m"]:
        assert importlib.util.find_spec(rest[1]) is not None, f"{page}: `{command}`: no module {rest[1]}"
        if rest[1] == "benchmarks" and not any(w.startswith("<") or w == "..." or "outputs/" in w for w in rest):
            from benchmarks.__main__ import parser

            parser().parse_args([w for w in rest[2:] if w != "--help"])  # its subcommands and options
    elif head == "ssd":
        if rest in ([], ["--help"], ["--version"]):
            return
        sub, options = rest[0], [w for w in rest[1:] if w != "--help"]
        assert sub in SUBCOMMANDS, f"{page}: `{command}`: no subcommand {sub!r}"
        if not options or any(w.endswith(".help") or w.endswith("=...") for w in options):
            return  # the subcommand named in a sentence, its help, or an option named with an elided value
        if sub in ("export", "sample"):
            (export_parser if sub == "export" else sample_parser)().parse_args(options)
        elif sub == "fid":
            build_parser().parse_args(options)
        else:
            for i, w in enumerate(options):
                if w in ("--config", "-c") or w.startswith("--config="):
                    path = w.split("=", 1)[1] if "=" in w else options[i + 1]
                    assert all((ROOT / p).is_file() for p in _glob(path)), f"{page}: `{command}`: no config {path}"
            if any("*" in w for w in options):
                return
            ssd_parser.parse_args([sub, *[w.replace("configs/", f"{ROOT}/configs/") for w in options]])
    elif head in ("git", "cp", "pip", "cd", "time"):
        return
    else:
        pytest.fail(f"{page}: `{command}`: a command this test does not know how to check")


def _glob(path: str) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in ROOT.glob(path)] or [path]


def test_every_link_in_the_readme_and_docs_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if not re.match(r"[a-z]+://", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_commands_found_cover_every_subcommand():
    from scale_space_diffusion.cli import SUBCOMMANDS

    used = {_tokens(c)[1] for _, c in COMMANDS if c.startswith("ssd ") and len(_tokens(c)) > 1}
    assert set(SUBCOMMANDS) - {"validate"} <= used, set(SUBCOMMANDS) - used
