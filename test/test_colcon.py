"""`colcon build` of the package in a scratch workspace gives the ament install layout that `ros2 run` and
`ros2 launch` use: executables in <prefix>/lib/<package>/ (where ros2run looks, not on PATH), the package marker in
share/ament_index/resource_index/packages/ (how ament_index finds the prefix), package.xml, launch and config
files in share/<package>/. colcon comes from pip (colcon-common-extensions); skipped with a message where it is
missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "depth_ft_ros"


def _colcon() -> list[str]:
    try:
        import colcon_core  # noqa: F401
    except ImportError:
        pytest.skip("colcon is not installed here (pip install colcon-common-extensions)")
    return [sys.executable, "-m", "colcon"]


def _tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell the package's files from build outputs")
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    colcon = _colcon()
    workspace = tmp_path_factory.mktemp("ws")
    source = workspace / "src" / PACKAGE
    for name in _tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMENT_", "COLCON_"))}
    proc = subprocess.run([*colcon, "build", "--event-handlers", "console_direct-"], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return workspace / "install" / PACKAGE


def test_ament_layout(install: Path) -> None:
    for executable in ("depth_ft_node", "depth-ft-ros"):
        assert os.access(install / "lib" / PACKAGE / executable, os.X_OK), executable
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    share = install / "share" / PACKAGE
    for name in ("package.xml", "launch/depth_ft.launch.py", "config/depth_ft.yaml", "config/depth_ft.rviz"):
        assert (share / name).is_file(), name


def test_installed_cli_runs_from_the_install_space(install: Path) -> None:
    """What `ros2 run depth_ft_ros depth-ft-ros --help` executes, with the install space on PYTHONPATH (as
    sourcing install/setup.bash sets it), the source tree out of the way, and a Python environment that has the
    dependencies first on PATH (an activated venv): the scripts run `/usr/bin/env python3`, not the interpreter
    that happened to run colcon, which may lack the packages that have no rosdep key."""
    script = install / "lib" / PACKAGE / "depth-ft-ros"
    assert script.read_text().splitlines()[0] == "#!/usr/bin/env python3"
    site = next(install.glob("lib/python3*/site-packages"))
    env_bin = Path(sys.executable).parent  # this environment's bin/ first on PATH: an activated venv
    assert (env_bin / "python3").exists()
    env = {**os.environ, "PYTHONPATH": str(site), "PATH": f"{env_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(script), "--help"], cwd=install, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "fetch-model" in proc.stdout and "replay" in proc.stdout
    located = subprocess.run([sys.executable, "-c", "import depth_ft_ros; print(depth_ft_ros.__file__)"],
                             cwd=install, env=env, capture_output=True, text=True, timeout=60)
    assert located.stdout.strip().startswith(str(site)), located.stdout + located.stderr
