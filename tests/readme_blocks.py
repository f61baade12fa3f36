"""Run the README's code blocks as a reader would: in order, in one working directory, each its own process.

A block is selected by the HTML comment on the line before its fence:

- no comment: Python blocks run as they are; other blocks are not run (install commands, layouts);
- ``<!-- readme-test: run -->``: run (Python or bash);
- ``<!-- readme-test: s3 -->``: run with S3 credentials and endpoint pointing at a moto server, every
  ``s3://bucket`` the block names created first (the block needs cloud credentials);
- ``<!-- readme-test: gcs -->``: run against fake-gcs-server, every ``gs://bucket`` it names created first;
- ``<!-- readme-test: azure -->``: run against Azurite with its development account in the environment,
  every ``azure://host/container`` it names created first;
- ``<!-- readme-test: spark -->``: needs pyspark and Java; run by the ``spark`` session only.

In the blocks of a cloud mark, the endpoint addresses a reader would use locally (``PLACEHOLDERS`` in
``test_readme``) are replaced by the fake servers' addresses; nothing else of the block changes.

Python blocks may use top-level ``await``/``async for`` (compiled with ``PyCF_ALLOW_TOP_LEVEL_AWAIT``
and run with ``asyncio.run``), as they would in ``python -m asyncio``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"
_MARK = re.compile(r"^<!-- readme-test: (\w+) -->$")
_RUNNER = """
import ast, asyncio, sys
path = sys.argv[1]
with open(path) as f:
    code = compile(f.read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__", "__file__": path})
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


@dataclass(frozen=True)
class Block:
    """One fenced block of the README."""

    line: int  # 1-based line of the opening fence
    lang: str
    mark: str | None
    code: str

    @property
    def runs(self) -> bool:
        """Whether the README tests run this block (spark blocks: the spark session)."""
        return self.mark is not None or self.lang == "python"

    @property
    def buckets(self) -> list[str]:
        """The buckets (``s3://``, ``gs://``) or Azure containers (``azure://host/container``) it names."""
        found = re.findall(r"(?:s3|gs)://([a-z0-9][a-z0-9.-]+)", self.code)
        found += re.findall(r"azure://[^/\s]+/([a-z0-9][a-z0-9-]+)", self.code)
        return sorted(set(found))


def blocks(path: Path = README) -> list[Block]:
    """Every fenced block of ``path``, in order."""
    out = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            lang = lines[i][3:].strip()
            mark = _MARK.match(lines[i - 1]) if i else None
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            out.append(
                Block(i + 1, lang, mark.group(1) if mark else None, "\n".join(lines[i + 1 : j]) + "\n")
            )
            i = j
        i += 1
    return out


def run_block(
    block: Block, cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``block`` in ``cwd`` with ``env``; Python through the top-level-await runner, else bash."""
    script = cwd / f"readme_block_{block.line}.{'py' if block.lang == 'python' else 'sh'}"
    script.write_text(block.code)
    if block.lang == "python":
        argv = [sys.executable, "-c", _RUNNER, str(script)]
    else:
        argv = ["bash", "-euo", "pipefail", str(script)]
    try:
        return subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    finally:
        script.unlink()
