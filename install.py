"""Install step after requirements.txt: leaves exactly one onnxruntime build installed.

ComfyUI Manager runs this file after it has installed requirements.txt; after a manual
``pip install -r requirements.txt``, run it with the same Python: ``python install.py``
(``--check`` only reports).

Why: insightface 1.0 and later depend on the CPU ``onnxruntime``, while this pack asks for
``onnxruntime-gpu`` (Linux, Windows). Both distributions install the same Python module
``onnxruntime``, so whichever pip wrote last wins, file by file: the CUDA provider vanishes, or the
module is a mix of two releases. pip cannot leave a dependency out, so this step removes the CPU
build again and reinstalls the GPU build over the shared files (the uninstall deleted them). It also
reinstalls the GPU build when it is the only one but has lost its CUDA provider, i.e. its files were
overwritten earlier. It never removes another accelerated build (DirectML, ROCm, OpenVINO, ...); it
only names it. ``DREAMOVING_SKIP_ONNXRUNTIME_FIX=1`` turns the step off.

Standard library only: it runs before anything of the pack can be imported.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata

CPU = "onnxruntime"
GPU = "onnxruntime-gpu"
# Distributions that all install the Python module ``onnxruntime`` (each overwrites the others' files).
ONNXRUNTIME_BUILDS = (CPU, GPU, "onnxruntime-directml", "onnxruntime-openvino", "onnxruntime-rocm",
                      "onnxruntime-silicon", "onnxruntime-qnn", "onnxruntime-coreml")
CUDA_PROVIDER = "CUDAExecutionProvider"
SKIP_ENV = "DREAMOVING_SKIP_ONNXRUNTIME_FIX"


def wanted_build(platform: str = sys.platform) -> str:
    """The onnxruntime distribution requirements.txt asks for on this platform."""
    return CPU if platform == "darwin" else GPU


def normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed_builds() -> dict[str, str]:
    """{distribution: version} of the onnxruntime builds installed for this Python."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = normalise(dist.metadata.get("Name") or "")
        if name in ONNXRUNTIME_BUILDS:
            found.setdefault(name, dist.version)
    return found


@dataclass
class Plan:
    uninstall: list[str] = field(default_factory=list)  # distributions to remove
    reinstall: str | None = None                          # "name==version" to force-reinstall, without deps
    notes: list[str] = field(default_factory=list)        # what the step found and did, for the log

    @property
    def acts(self) -> bool:
        return bool(self.uninstall or self.reinstall)


def plan(installed: dict[str, str], platform: str = sys.platform,
         providers: list[str] | None = None) -> Plan:
    """What to do, from the builds installed and the providers the ``onnxruntime`` module reports
    (``None``: it does not import)."""
    want = wanted_build(platform)
    result = Plan()
    if not installed:
        result.notes.append(f"no onnxruntime build is installed; face analysis and DWPose need one: "
                            f"pip install {want}")
        return result
    if want not in installed:
        result.notes.append(f"{want} is not installed (found {', '.join(sorted(installed))}); left as it is")
        return result
    # only the pair this pack manages is touched: the CPU build that insightface brings in is removed where
    # the GPU build is wanted; any other accelerated build is named, never removed
    if want == GPU and CPU in installed:
        result.uninstall.append(CPU)
        result.notes.append(f"{CPU} {installed[CPU]} (brought in by insightface) shares the onnxruntime module "
                            f"with {GPU} {installed[GPU]}: removing it")
    others = sorted(set(installed) - {want} - set(result.uninstall))
    if others:
        result.notes.append(f"other onnxruntime builds installed beside {want}: {', '.join(others)}; they share the "
                            f"onnxruntime module, keep one: pip uninstall -y {' '.join(others)}")
    damaged = providers is None or (want == GPU and CUDA_PROVIDER not in providers)
    if result.uninstall or (damaged and not others):
        result.reinstall = f"{want}=={installed[want]}"
        if not result.uninstall:
            result.notes.append(f"the onnxruntime module of {want} {installed[want]} "
                                + ("does not import" if providers is None else f"lacks {CUDA_PROVIDER}")
                                + ": reinstalling it")
    return result


def probe_providers(python: str = sys.executable) -> list[str] | None:
    """The providers a fresh interpreter's ``onnxruntime`` reports; None when it does not import."""
    code = "import onnxruntime; print(','.join(onnxruntime.get_available_providers()))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [p for p in out.stdout.strip().split(",") if p]


def pip_command() -> list[str] | None:
    """pip of this Python (as ComfyUI Manager runs it), else uv's pip aimed at this Python."""
    base = [sys.executable] + (["-s"] if "python_embeded" in sys.executable else []) + ["-m", "pip"]
    try:
        subprocess.run(base + ["--version"], capture_output=True, check=True, timeout=60)
        return base
    except (OSError, subprocess.SubprocessError):
        pass
    return ["uv", "pip"] if shutil.which("uv") else None


def commands(p: Plan, pip: list[str]) -> list[list[str]]:
    uv = pip[:2] == ["uv", "pip"]
    target = ["--python", sys.executable] if uv else []
    out = []
    if p.uninstall:
        out.append(pip + ["uninstall"] + ([] if uv else ["-y"]) + target + p.uninstall)
    if p.reinstall:
        reinstall = "--reinstall" if uv else "--force-reinstall"
        out.append(pip + ["install", reinstall, "--no-deps"] + target + [p.reinstall])
    return out


def manual_fix(p: Plan) -> str:
    removed = p.uninstall + ([p.reinstall.split("==")[0]] if p.reinstall else [])
    return (f'"{sys.executable}" -m pip uninstall -y {" ".join(dict.fromkeys(removed))} && '
            f'"{sys.executable}" -m pip install {p.reinstall}')


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tag = "[DreaMoving install]"
    if os.environ.get(SKIP_ENV):
        print(f"{tag} {SKIP_ENV} is set: onnxruntime left as it is")
        return 0
    p = plan(installed_builds(), sys.platform, probe_providers())
    for note in p.notes:
        print(f"{tag} {note}")
    if not p.acts:
        if not p.notes:
            print(f"{tag} onnxruntime: one build installed ({wanted_build()}), nothing to do")
        return 0
    if "--check" in argv:
        print(f"{tag} --check: would run: {manual_fix(p)}")
        return 0
    pip = pip_command()
    if pip is None:
        print(f"{tag} neither pip nor uv found; fix by hand: {manual_fix(p)}")
        return 1
    for cmd in commands(p, pip):
        print(f"{tag} running: {' '.join(cmd)}")
        if subprocess.run(cmd).returncode != 0:
            print(f"{tag} that failed; fix by hand: {manual_fix(p)}")
            return 1
    after, providers = installed_builds(), probe_providers()
    want = wanted_build()
    ok = want in after and (want == CPU or CPU not in after) and providers is not None \
        and (want != GPU or CUDA_PROVIDER in providers)
    print(f"{tag} onnxruntime now: {', '.join(f'{k} {v}' for k, v in sorted(after.items()))}; "
          f"providers: {', '.join(providers or ['(does not import)'])}")
    if not ok:
        print(f"{tag} still not right; fix by hand: {manual_fix(p)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
