"""Packaging: requirements.txt and pyproject.toml agree, one onnxruntime build per platform (install.py keeps it
so), the Comfy Registry fields are what the registry and ``comfy node validate`` accept, and the test-built ONNX
graphs carry an IR version every supported onnxruntime reads."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from dreamoving import face_analysis

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PLATFORMS = ("linux", "win32", "darwin")
ORT = {"onnxruntime", "onnxruntime-gpu"}


def _install():
    spec = importlib.util.spec_from_file_location("dreamoving_install_py", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


install = _install()


def requirement_lines() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def applies(req: Requirement, platform: str) -> bool:
    return req.marker is None or req.marker.evaluate(dict(default_environment(), sys_platform=platform))


# --- dependencies -------------------------------------------------------------------------------------------

def test_requirements_txt_and_pyproject_list_the_same_dependencies_in_the_same_order():
    from_txt = [Requirement(line) for line in requirement_lines()]
    from_toml = [Requirement(dep) for dep in pyproject()["project"]["dependencies"]]
    assert [str(r) for r in from_txt] == [str(r) for r in from_toml]


def test_requirements_never_touch_torch():
    names = {Requirement(line).name.lower() for line in requirement_lines()}
    assert not names & {"torch", "torchvision", "torchaudio"}


def test_insightface_range_is_the_one_verified():
    (req,) = [Requirement(line) for line in requirement_lines() if Requirement(line).name == "insightface"]
    # 0.7.3 (sdist, no onnxruntime dependency: what many ComfyUI installs already have, kept as it is),
    # 1.0.1, 2.0 and 2.1 (wheels) were run through dreamoving.face_analysis; 3.x is unknown
    for ok in ("0.7.3", "1.0.1", "2.0", "2.1"):
        assert req.specifier.contains(ok), ok
    for not_ok in ("0.7.2", "3.0"):
        assert not req.specifier.contains(not_ok), not_ok


@pytest.mark.parametrize("platform", PLATFORMS)
def test_exactly_one_onnxruntime_build_is_asked_for_per_platform(platform):
    asked = [Requirement(line) for line in requirement_lines()
             if Requirement(line).name in install.ONNXRUNTIME_BUILDS and applies(Requirement(line), platform)]
    assert [r.name for r in asked] == [install.wanted_build(platform)]
    assert asked[0].specifier.contains("1.16.0") and not asked[0].specifier.contains("1.15.1")
    assert install.wanted_build(platform) == ("onnxruntime" if platform == "darwin" else "onnxruntime-gpu")


def test_onnxruntime_lines_come_after_insightface():
    """ComfyUI Manager installs requirements.txt line by line: the requested build is then written last, over
    the CPU files insightface brought in, even before install.py removes the CPU build."""
    names = [Requirement(line).name for line in requirement_lines()]
    assert max(i for i, n in enumerate(names) if n in ORT) > names.index("insightface")
    assert min(i for i, n in enumerate(names) if n in ORT) > names.index("insightface")


def test_install_py_and_the_load_time_check_know_the_same_onnxruntime_builds():
    assert install.ONNXRUNTIME_BUILDS == face_analysis.ONNXRUNTIME_BUILDS
    assert {install.CPU, install.GPU} <= set(install.ONNXRUNTIME_BUILDS)


# --- install.py's decision ----------------------------------------------------------------------------------

CUDA = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
CPU_ONLY = ["AzureExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize("platform", ("linux", "win32"))
@pytest.mark.parametrize("providers", (CUDA, CPU_ONLY, None))
def test_cpu_build_beside_gpu_build_is_removed_and_gpu_reinstalled(platform, providers):
    plan = install.plan({"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}, platform, providers)
    assert plan.uninstall == ["onnxruntime"]
    assert plan.reinstall == "onnxruntime-gpu==1.31.1"  # the uninstall deleted the shared files


def test_single_gpu_build_with_cuda_is_left_alone():
    plan = install.plan({"onnxruntime-gpu": "1.31.1"}, "linux", CUDA)
    assert not plan.acts and not plan.notes


@pytest.mark.parametrize("providers", (CPU_ONLY, None))
def test_single_gpu_build_with_overwritten_files_is_reinstalled(providers):
    plan = install.plan({"onnxruntime-gpu": "1.20.0"}, "linux", providers)
    assert plan.uninstall == [] and plan.reinstall == "onnxruntime-gpu==1.20.0"


def test_darwin_keeps_the_cpu_build():
    assert not install.plan({"onnxruntime": "1.32.0"}, "darwin", CPU_ONLY).acts
    plan = install.plan({"onnxruntime": "1.32.0"}, "darwin", None)
    assert plan.uninstall == [] and plan.reinstall == "onnxruntime==1.32.0"


def test_other_accelerated_builds_are_named_never_removed():
    plan = install.plan({"onnxruntime-gpu": "1.31.1", "onnxruntime-directml": "1.20.0"}, "win32", CPU_ONLY)
    assert not plan.acts
    assert any("onnxruntime-directml" in note for note in plan.notes)
    plan = install.plan({"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1", "onnxruntime-directml": "1.20.0"},
                        "win32", CUDA)
    assert plan.uninstall == ["onnxruntime"] and plan.reinstall == "onnxruntime-gpu==1.31.1"


@pytest.mark.parametrize("installed", ({}, {"onnxruntime": "1.32.0"}))
def test_nothing_is_installed_when_the_wanted_build_is_missing(installed):
    plan = install.plan(installed, "linux", CPU_ONLY)
    assert not plan.acts and plan.notes


def test_main_runs_uninstall_then_reinstall_then_checks(monkeypatch, capsys):
    builds = iter([{"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}, {"onnxruntime-gpu": "1.31.1"}])
    providers = iter([CPU_ONLY, CUDA])
    ran = []

    class Done:
        returncode = 0

    monkeypatch.delenv(install.SKIP_ENV, raising=False)
    monkeypatch.setattr(install.sys, "platform", "linux")
    monkeypatch.setattr(install, "installed_builds", lambda: next(builds))
    monkeypatch.setattr(install, "probe_providers", lambda: next(providers))
    monkeypatch.setattr(install, "pip_command", lambda: ["py", "-m", "pip"])
    monkeypatch.setattr(install.subprocess, "run", lambda cmd, **kw: ran.append(cmd) or Done())
    assert install.main([]) == 0
    assert ran == [["py", "-m", "pip", "uninstall", "-y", "onnxruntime"],
                   ["py", "-m", "pip", "install", "--force-reinstall", "--no-deps", "onnxruntime-gpu==1.31.1"]]
    assert "onnxruntime-gpu 1.31.1" in capsys.readouterr().out


def test_main_reports_failure_when_the_repair_did_not_take(monkeypatch):
    builds = iter([{"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}] * 2)
    monkeypatch.delenv(install.SKIP_ENV, raising=False)
    monkeypatch.setattr(install.sys, "platform", "linux")
    monkeypatch.setattr(install, "installed_builds", lambda: next(builds))
    monkeypatch.setattr(install, "probe_providers", lambda: CPU_ONLY)
    monkeypatch.setattr(install, "pip_command", lambda: ["py", "-m", "pip"])
    monkeypatch.setattr(install.subprocess, "run", lambda cmd, **kw: type("R", (), {"returncode": 0})())
    assert install.main([]) == 1


def test_main_check_and_skip_change_nothing(monkeypatch):
    monkeypatch.setattr(install, "installed_builds", lambda: {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"})
    monkeypatch.setattr(install, "probe_providers", lambda: CPU_ONLY)
    monkeypatch.setattr(install.sys, "platform", "linux")
    monkeypatch.setattr(install.subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    monkeypatch.delenv(install.SKIP_ENV, raising=False)
    assert install.main(["--check"]) == 0
    monkeypatch.setenv(install.SKIP_ENV, "1")
    assert install.main([]) == 0


def test_uv_commands_target_this_python():
    plan = install.plan({"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}, "linux", CUDA)
    uninstall, reinstall = install.commands(plan, ["uv", "pip"])
    assert uninstall == ["uv", "pip", "uninstall", "--python", sys.executable, "onnxruntime"]
    assert reinstall == ["uv", "pip", "install", "--reinstall", "--no-deps", "--python", sys.executable,
                         "onnxruntime-gpu==1.31.1"]


# --- the load-time check ------------------------------------------------------------------------------------

def test_load_time_warning_names_both_builds_and_the_fix():
    message = face_analysis.onnxruntime_install_warning({"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"},
                                                        "linux")
    assert "onnxruntime 1.32.0" in message and "onnxruntime-gpu 1.31.1" in message
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in message
    assert "pip install onnxruntime-gpu==1.31.1" in message
    assert str(ROOT / "install.py") in message
    darwin = face_analysis.onnxruntime_install_warning({"onnxruntime": "1.32.0", "onnxruntime-silicon": "1.16"},
                                                       "darwin")
    assert "pip install onnxruntime==1.32.0" in darwin


@pytest.mark.parametrize("builds", ({}, {"onnxruntime-gpu": "1.31.1"}, {"onnxruntime": "1.32.0"}))
def test_load_time_warning_is_silent_for_one_build_or_none(builds):
    assert face_analysis.onnxruntime_install_warning(builds, "linux") is None


def test_installed_builds_read_from_metadata_agree():
    assert face_analysis.onnxruntime_builds() == install.installed_builds()


# --- Comfy Registry fields (docs.comfy.org/registry/specifications; comfy-cli's config_parser) -------------

def test_registry_project_fields():
    project = pyproject()["project"]
    name = project["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*([-_.][A-Za-z0-9]+)*", name)
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), "registry versions are X.Y.Z"
    assert project["description"].strip()
    assert SpecifierSet(project["requires-python"]).contains("3.10")  # insightface >= 2.0 needs 3.10
    url = project["urls"]["Repository"]
    assert re.fullmatch(r"https://github\.com/[^/\s]+/[^/\s]+", url)


def test_license_is_the_full_gpl3_text():
    license_ = pyproject()["project"]["license"]
    assert isinstance(license_, dict) and set(license_) == {"file"}, 'the registry takes {file = ...} or {text = ...}'
    text = (ROOT / license_["file"]).read_text()
    assert text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE")
    assert "Version 3, 29 June 2007" in text
    for part in ("TERMS AND CONDITIONS", "END OF TERMS AND CONDITIONS",
                 "How to Apply These Terms to Your New Programs"):
        assert part in text
    assert len(text) > 34000  # the whole licence, not a stub


def test_registry_tool_comfy_fields():
    comfy = pyproject()["tool"]["comfy"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", comfy["PublisherId"])
    assert comfy.get("DisplayName", "x").strip()
    for image in ("Icon", "Banner"):  # optional; when given, a URL of an image
        if image in comfy:
            assert re.fullmatch(r"https://\S+\.(svg|png|jpe?g|gif)", comfy[image]), image
    for folder in comfy.get("includes", []):
        assert (ROOT / folder).is_dir(), folder
    # comfy-cli's validate_version: [operator]X.Y.Z[-suffix], comma-separated parts
    part = re.compile(r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$")
    requires = comfy["requires-comfyui"]
    assert all(part.match(p.strip()) for p in requires.split(","))
    assert SpecifierSet(requires).contains("0.3.64")  # the oldest ComfyUI the integration tests run on


def test_registry_classifiers_are_ones_comfy_cli_accepts():
    classifiers = pyproject()["project"].get("classifiers", [])
    accelerators = {"GPU :: NVIDIA CUDA", "GPU :: AMD ROCm", "GPU :: Intel Arc", "NPU :: Huawei Ascend",
                    "GPU :: Apple Metal"}
    for c in classifiers:
        if c.startswith("Operating System :: "):
            assert c.split(" :: ", 1)[1].startswith(("Microsoft", "POSIX", "MacOS", "OS Independent")), c
        elif c.startswith("Environment ::"):
            assert c[len("Environment :: "):] in accelerators, c


# --- ONNX graphs built by the tests -------------------------------------------------------------------------

def test_test_onnx_graphs_use_an_ir_version_onnxruntime_1_16_reads(tmp_path):
    onnx = pytest.importorskip("onnx")
    from dmtest import control_models, insightface_packs

    # onnxruntime 1.16 reads IR <= 9; opset 13 needs IR >= 7
    lowest = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", control_models.ONNX_OPSET)])
    assert lowest <= control_models.ONNX_IR_VERSION <= 9
    for build in (control_models._yolox, insightface_packs._detector, insightface_packs._recogniser):
        path = tmp_path / f"{build.__name__}.onnx"
        build(path)
        model = onnx.load(str(path))
        assert model.ir_version == control_models.ONNX_IR_VERSION
        assert [(o.domain, o.version) for o in model.opset_import] == [("", control_models.ONNX_OPSET)]
    ort = pytest.importorskip("onnxruntime")
    ort.InferenceSession(str(tmp_path / "_recogniser.onnx"), providers=["CPUExecutionProvider"])
    assert Version(ort.__version__) >= Version("1.16")
