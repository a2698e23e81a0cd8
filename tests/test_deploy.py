"""deploy/ (kustomize) installs on a real API server with one command, and the Dockerfile holds together.

There is no kubelet and no Docker engine here: the API server accepting every object (CRDs, RBAC, the gateway's
Deployment and ConfigMap), RBAC granting what the gateway needs, and a static reading of the Dockerfile are what
this machine can check.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import typer
import yaml

from tests.kube_helpers import kubectl
from yurt_iot.cli import app
from yurt_iot.testing.controlplane import ControlPlane

REPO = Path(__file__).resolve().parent.parent
GATEWAY = "system:serviceaccount:yurt-iot:yurt-iot-gateway"


def test_the_crd_kustomization_lists_every_generated_crd() -> None:
    listed = yaml.safe_load((REPO / "crds/Kustomization").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in (REPO / "crds").glob("*.yaml"))


def test_kubectl_apply_k_installs_everything(control_plane: ControlPlane) -> None:
    applied = kubectl(control_plane, "apply", "-k", str(REPO / "deploy"))
    assert applied.returncode == 0, applied.stderr
    for name in ("namespace/yurt-iot", "serviceaccount/yurt-iot-gateway", "clusterrole.rbac.authorization.k8s.io/"
                 "yurt-iot-gateway", "configmap/yurt-iot-devices", "deployment.apps/yurt-iot-gateway-hangzhou",
                 "customresourcedefinition.apiextensions.k8s.io/devices.iot.openyurt.io"):  # fmt: skip
        assert name in applied.stdout

    deployment = json.loads(kubectl(control_plane, "get", "deploy", "yurt-iot-gateway-hangzhou", "-n", "yurt-iot",
                                    "-o", "json").stdout)  # fmt: skip
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"][0] == "gateway" and "--manifests=/etc/yurt-iot/manifests" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == "yurt-iot-gateway"

    dock = json.loads(kubectl(control_plane, "get", "deploy", "yurt-iot-dock-hangzhou", "-n", "yurt-iot",
                              "-o", "json").stdout)  # fmt: skip
    [controller] = dock["spec"]["template"]["spec"]["containers"]
    assert controller["args"][:3] == ["dock", "--namespace=yurt-iot", "--pool=hangzhou"]
    assert controller["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for args in (container["args"], controller["args"]):  # both command lines parse as the CLI's
        parses_as_cli(args)

    # the ConfigMap carries device manifests the gateway can run, and `yurt-iot validate` finds them clean
    config = json.loads(kubectl(control_plane, "get", "cm", "yurt-iot-devices", "-n", "yurt-iot", "-o", "json").stdout)
    kinds = [d["kind"] for text in config["data"].values() for d in yaml.safe_load_all(text) if d]
    assert "Device" in kinds and "DeviceProfile" in kinds
    checked = subprocess.run(["yurt-iot", "validate", str(REPO / "deploy/devices")], capture_output=True, text=True,
                             timeout=60, check=False)  # fmt: skip
    assert checked.returncode == 0 and not checked.stdout, checked.stdout


def test_the_gateway_account_may_do_its_job_and_no_more(control_plane: ControlPlane) -> None:
    assert kubectl(control_plane, "apply", "-k", str(REPO / "deploy")).returncode == 0

    def can(*args: str) -> bool:
        answer = kubectl(control_plane, "auth", "can-i", "--as", GATEWAY, *args)
        return answer.stdout.strip() == "yes"

    assert can("watch", "devices.iot.openyurt.io", "-A")
    assert can("patch", "devices.iot.openyurt.io", "--subresource=status", "-n", "hangzhou")
    assert can("update", "deviceprofiles.iot.openyurt.io", "-n", "hangzhou")
    assert can("list", "nodepools.apps.openyurt.io")
    assert can("list", "nodes")
    assert can("create", "events", "-n", "hangzhou")
    assert can("update", "leases.coordination.k8s.io", "-n", "yurt-iot")
    assert not can("update", "leases.coordination.k8s.io", "-n", "kube-system")
    assert not can("delete", "nodes")
    assert not can("get", "secrets", "-n", "yurt-iot")


def _instructions() -> list[tuple[str, str]]:
    lines = (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [(w[0].upper(), w[1]) for line in lines if line.strip() and not line.startswith("#")
            for w in [line.split(None, 1)]]  # fmt: skip


def test_the_dockerfile_is_multi_stage_non_root_and_runs_the_cli() -> None:
    instructions = _instructions()
    stages = [args.split() for op, args in instructions if op == "FROM"]
    assert len(stages) == 2 and stages[0][-2:] == ["AS", "build"] and stages[0][0].endswith("-slim")
    final = instructions[[i for i, (op, _) in enumerate(instructions) if op == "FROM"][-1] :]
    assert ("COPY", "--from=build /wheels /wheels") in final
    assert not any(op == "RUN" and "apt-get" in args for op, args in final)  # no compiler in the image
    [user] = [args for op, args in final if op == "USER"]
    assert int(user.split(":")[0]) != 0
    assert [json.loads(args) for op, args in final if op == "ENTRYPOINT"] == [["yurt-iot"]]

    # everything the build copies exists, and it is everything the package build needs (setup.py maps drivers/)
    copied = {source for op, args in instructions if op == "COPY" and not args.startswith("--from")
              for source in shlex.split(args)[:-1]}  # fmt: skip
    assert all((REPO / source).exists() for source in copied), copied
    assert {"pyproject.toml", "setup.py", "README.md", "yurt_iot", "drivers"} <= copied


def parses_as_cli(args: list[str]) -> None:
    """Fails (a usage error) unless `yurt-iot <args>` names a subcommand whose options all parse."""
    group = typer.main.get_command(app)
    command = group.get_command(group.make_context("yurt-iot", [args[0]]), args[0])
    assert command is not None, f"no subcommand {args[0]!r}"
    command.make_context(args[0], list(args[1:]))


def test_the_image_build_packages_every_module_and_runs_every_subcommand(tmp_path: Path) -> None:
    """Stage 1 of the Dockerfile, done here: a wheel built from only the files it copies holds every module of
    yurt_iot/ and drivers/, the console script and the driver entry points; run from that wheel's files (not this
    checkout), every subcommand answers --help and every built-in driver loads."""
    source = tmp_path / "src"
    source.mkdir()
    for op, args in _instructions():
        if op == "COPY" and not args.startswith("--from") and "examples" not in args:
            for name in shlex.split(args)[:-1]:
                copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
                copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "wheels"),
                    str(source)], check=True, timeout=300)  # fmt: skip
    [wheel] = (tmp_path / "wheels").glob("yurt_iot-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    expected = {str(p.relative_to(REPO)) for p in (REPO / "yurt_iot").rglob("*.py")} | {
        "yurt_iot_drivers/" + str(p.relative_to(REPO / "drivers")) for p in (REPO / "drivers").rglob("*.py")
    }
    assert expected - packaged == set(), "modules the image would lack"

    check = """
import importlib.metadata, sys
from typer.testing import CliRunner
import typer.main
from yurt_iot.cli import app
import yurt_iot
assert yurt_iot.__file__.startswith(sys.argv[1]), yurt_iot.__file__
group = typer.main.get_command(app)
runner = CliRunner()
for name in group.list_commands(None):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, (name, result.output)
[dist] = importlib.metadata.distributions(path=[sys.argv[1]])
scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
assert scripts == {"yurt-iot": "yurt_iot.cli:app"}, scripts
drivers = [ep for ep in dist.entry_points if ep.group == "yurt_iot.drivers"]
assert {ep.name for ep in drivers} >= {"modbus-tcp", "modbus-rtu", "opcua", "mqtt"}
for ep in drivers:
    module = sys.modules[ep.load().__module__]
    assert module.__file__.startswith(sys.argv[1]), module.__file__
print("ok", len(drivers))
"""
    site = str(tmp_path / "site")
    result = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, sys.argv[1]); {check}",
                             site], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr
