"""What a user installs: one ``visionfleet`` namespace and its public API."""
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import REPO, stop_process, wait_until

pytestmark = pytest.mark.slow  # builds and installs the wheel, runs new interpreters

GENERIC = ("broker", "checkpoints", "cli", "pipeline", "workers")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The project built as a wheel and installed, without its dependencies, into a folder of its own."""
    tmp = tmp_path_factory.mktemp("package")
    # Built from a copy: setuptools leaves a build/ folder beside the sources it builds.
    source = shutil.copytree(REPO, tmp / "src", ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "tests",
                                                                               "bench", "photos", "labels"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp / "dist"), str(source)], check=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("visionfleet-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(tmp / "site"),
                    str(wheel)], check=True, timeout=300)
    return wheel, tmp / "site"


def run_installed(site, code: str, tmp_path) -> str:
    """Run ``code`` in a new interpreter that finds the installed copy first, from a folder away from the repo."""
    env = {"PYTHONPATH": str(site), "VISIONFLEET_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_wheel_has_one_top_level_package(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"visionfleet", "visionfleet-0.1.0.dist-info"}
    assert "visionfleet/pipeline/imagenet_classes.txt" in names
    assert "visionfleet/checkpoints/redis/commit.lua" in names  # the store's scripts: package data
    entry_points = zipfile.ZipFile(wheel).read("visionfleet-0.1.0.dist-info/entry_points.txt").decode()
    assert "visionfleet = visionfleet.cli.main:main" in entry_points


def test_the_public_api_imports_without_torch_or_a_broker(installed, tmp_path):
    _, site = installed
    out = run_installed(site, """
import sys, visionfleet
from visionfleet import VisionClient, Model, ModelInfo, Geometry, RuntimeSettings, ConfigError, VisionfleetError
assert visionfleet.__file__.startswith(sys.path[1]), visionfleet.__file__
assert sorted(visionfleet.__all__) == dir(visionfleet)
assert all(getattr(visionfleet, name).__doc__ for name in visionfleet.__all__)
print(sorted(m for m in ('torch', 'visionfleet.broker.celery_app') if m in sys.modules))
""", tmp_path)
    # The client module names the Celery app only when a client is built.
    assert out.split() == ["[]"]


def test_the_command_that_plans_and_enqueues_a_job_loads_no_model_code(installed, tmp_path):
    """numpy, Pillow and the runtimes cost a tenth of a second of every ``relabel``; only workers need them."""
    _, site = installed
    out = run_installed(site, """
import sys, visionfleet.cli.main, visionfleet.cli.jobs, visionfleet.broker.celery_app
print(sorted(m for m in ('numpy', 'PIL', 'torch', 'onnxruntime') if m in sys.modules))
""", tmp_path)
    assert out.split() == ["[]"]


def test_every_module_imports_under_its_installed_name(installed, tmp_path):
    """A leftover ``import pipeline`` would pass inside the repo and fail here."""
    _, site = installed
    out = run_installed(site, f"""
import importlib, pkgutil, sys, visionfleet
for module in pkgutil.walk_packages(visionfleet.__path__, "visionfleet."):
    if not module.name.endswith("__main__"):  # runs the CLI
        importlib.import_module(module.name)
print(sorted(name for name in sys.modules if name.split(".")[0] in {GENERIC!r}))
""", tmp_path)
    assert out.split() == ["[]"]


def test_celery_dash_a_worker_starts_by_the_new_name(fleet_env, tmp_path):
    log = tmp_path / "celery.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "visionfleet.broker.celery_app", "worker",
                                 "-Q", "bulk", "-c", "1", "-n", "dash-a@%h", "-l", "INFO"], env=fleet_env, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: b"worker process ready" in log.read_bytes() or proc.poll() is not None, 120, "celery worker ready")
        assert proc.poll() is None, log.read_text()
    finally:
        stop_process(proc)
