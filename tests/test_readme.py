"""The README's Python example runs as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").exists(), reason="needs `make data`")
def test_readme_python_example(tmp_path, monkeypatch):
    block = re.search(r"<!-- readme-example -->\s*```python\n(.*?)```", README.read_text(), re.S)[1]
    monkeypatch.chdir(tmp_path)  # the example writes sample grids under the working directory
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert tuple(namespace["images"].shape) == (8, 1, 32, 32)
    assert namespace["images"].abs().max() <= 1
