"""The child's memory limit fits the machine or container it runs in (faked cgroup trees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.memory import available_bytes, cgroup_limit, child_memory_bytes
from autograder.settings import Limits

MB = 1 << 20
UNLIMITED_V1 = "9223372036854771712"

# (membership lines of /proc/self/cgroup, {file under the cgroup root: content}, limit)
TREES = {
    "v2-container-root": ("0::/\n", {"memory.max": str(768 * MB)}, 768 * MB),
    "v2-unlimited": ("0::/\n", {"memory.max": "max\n"}, None),
    "v2-ancestor-is-tighter": (
        "0::/a/b\n",
        {"memory.max": "max", "a/memory.max": str(500 * MB), "a/b/memory.max": "max"},
        500 * MB,
    ),
    "v2-own-group-is-tighter": (
        "0::/a/b\n",
        {"a/memory.max": str(900 * MB), "a/b/memory.max": str(600 * MB)},
        600 * MB,
    ),
    "v2-hybrid-unified-mount": ("0::/x\n", {"unified/x/memory.max": str(700 * MB)}, 700 * MB),
    "v1-docker-path": (
        "4:memory:/docker/abc\n3:cpu:/docker/abc\n",
        {
            "memory/memory.limit_in_bytes": UNLIMITED_V1,
            "memory/docker/abc/memory.limit_in_bytes": str(768 * MB),
        },
        768 * MB,
    ),
    "v1-namespaced": ("4:memory:/\n", {"memory/memory.limit_in_bytes": str(768 * MB)}, 768 * MB),
    "v1-unlimited": ("4:memory:/\n", {"memory/memory.limit_in_bytes": UNLIMITED_V1}, None),
    "v1-with-other-controllers": (
        "5:cpuacct,memory:/g\n",
        {"memory/g/memory.limit_in_bytes": str(300 * MB)},
        300 * MB,
    ),
    "v1-and-v2-take-the-tighter": (
        "4:memory:/g\n0::/g\n",
        {"memory/g/memory.limit_in_bytes": str(800 * MB), "g/memory.max": str(700 * MB)},
        700 * MB,
    ),
    "garbage-content": ("0::/\n", {"memory.max": "lots"}, None),
    "empty-file": ("0::/\n", {"memory.max": ""}, None),
    "zero": ("0::/\n", {"memory.max": "0"}, None),
    "no-limit-files": ("0::/\n4:memory:/\n", {}, None),
    "dot-dot-in-path-stays-inside": (
        "0::/../../etc\n",
        {"etc/memory.max": str(100 * MB), "memory.max": str(900 * MB)},
        100 * MB,
    ),
    "garbled-membership": ("nonsense\n::\n", {"memory.max": str(100 * MB)}, None),
}


def fake_tree(folder: Path, memberships: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = folder / "cgroup"
    root.mkdir()
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content, encoding="ascii")
    proc = folder / "proc-self-cgroup"
    proc.write_text(memberships, encoding="ascii")
    return root, proc


@pytest.mark.parametrize(("memberships", "files", "limit"), TREES.values(), ids=TREES.keys())
def test_cgroup_limit_is_the_tightest_on_the_path(
    tmp_path: Path, memberships: str, files: dict[str, str], limit: int | None
) -> None:
    root, proc = fake_tree(tmp_path, memberships, files)
    assert cgroup_limit(root=root, proc_cgroup=proc) == limit


def test_without_a_cgroup_the_physical_memory_counts(tmp_path: Path) -> None:
    physical = available_bytes(root=tmp_path / "none", proc_cgroup=tmp_path / "none")
    assert physical > 64 * MB
    root, proc = fake_tree(tmp_path, "0::/\n", {"memory.max": str(1 << 50)})
    assert available_bytes(root=root, proc_cgroup=proc) == physical  # min with physical
    (root / "memory.max").write_text(str(768 * MB), encoding="ascii")
    assert available_bytes(root=root, proc_cgroup=proc) == 768 * MB


LIMITS = Limits(memory_bytes=1 << 30, memory_headroom_bytes=256 * MB, memory_floor_bytes=192 * MB)


@pytest.mark.parametrize(
    ("available", "child"),
    [
        (768 * MB, 512 * MB),
        (24 << 30, 1 << 30),
        (1280 * MB, 1 << 30),
        (1000 * MB, 744 * MB),
        (300 * MB, 192 * MB),
        (0, 192 * MB),
    ],
    ids=["gradescope-768mb", "big-machine", "exactly-enough", "in-between", "floor", "nothing"],
)
def test_child_limit_leaves_headroom_for_the_grader(available: int, child: int) -> None:
    assert child_memory_bytes(LIMITS, available=available) == child
