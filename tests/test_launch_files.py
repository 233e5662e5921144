"""Every YAML and JSON under launch/ loads, the accelerate YAMLs through accelerate's own config class (an
unknown key fails), and the multi-node ones start a 2-node run: two `accelerate launch` on this machine, one
per "node", each with its --machine_rank (docs/multi_node.md)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
ACCELERATE_YAMLS = sorted((LAUNCH / "accelerate").glob("*.yaml"))
MULTINODE = [p for p in ACCELERATE_YAMLS if yaml.safe_load(p.read_text()).get("num_machines", 1) > 1]
HOSTFILE = LAUNCH / "deepspeed" / "hostfile"


def launch_parser_keys() -> set:
    """The option names `accelerate launch` knows: a config's nested deepspeed_config keys are copied onto them."""
    from accelerate.commands.launch import launch_command_parser

    return {action.dest for action in launch_command_parser()._actions}


@pytest.mark.parametrize("path", sorted(LAUNCH.rglob("*.yaml")) + sorted(LAUNCH.rglob("*.yml")),
                         ids=lambda p: str(p.relative_to(LAUNCH)))
def test_every_yaml_under_launch_parses(path):
    assert isinstance(yaml.safe_load(path.read_text()), dict)


@pytest.mark.parametrize("path", sorted(LAUNCH.rglob("*.json")), ids=lambda p: str(p.relative_to(LAUNCH)))
def test_every_json_under_launch_parses(path):
    cfg = json.loads(path.read_text())
    if path.parent.name == "deepspeed":
        assert cfg["zero_optimization"]["stage"] in (1, 2, 3)


@pytest.mark.parametrize("path", ACCELERATE_YAMLS, ids=lambda p: p.name)
def test_accelerate_yaml_loads_with_accelerates_own_config_class(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    cfg = load_config_from_file(str(path))  # raises on a top-level key accelerate does not know
    assert isinstance(cfg, ClusterConfig)
    unknown = set(cfg.deepspeed_config) - launch_parser_keys()
    assert not unknown, f"{path.name}: deepspeed_config keys accelerate ignores: {sorted(unknown)}"
    for key in ("deepspeed_config_file", "deepspeed_hostfile"):
        if key in cfg.deepspeed_config:
            assert (REPO / cfg.deepspeed_config[key]).is_file(), f"{path.name}: {key} points at a missing file"
    if cfg.distributed_type.value == "DEEPSPEED":
        assert cfg.deepspeed_config["deepspeed_multinode_launcher"] in ("standard", "pdsh")


def test_a_wrong_key_is_refused_by_the_loader(tmp_path):
    """The check above is not vacuous: accelerate's loader refuses a misspelt key."""
    from accelerate.commands.config.config_args import load_config_from_file

    bad = tmp_path / "bad.yaml"
    bad.write_text((LAUNCH / "accelerate" / "multinode_ddp.yaml").read_text().replace("num_machines", "num_machine"))
    with pytest.raises(ValueError, match="num_machine"):
        load_config_from_file(str(bad))


def test_multi_node_configs_exist_for_ddp_zero2_and_zero3():
    backends = set()
    for path in MULTINODE:
        cfg = yaml.safe_load(path.read_text())
        ds = cfg.get("deepspeed_config", {})
        stage = json.loads((REPO / ds["deepspeed_config_file"]).read_text())["zero_optimization"]["stage"] if ds else 0
        backends.add((cfg["distributed_type"], stage))
        assert cfg["num_processes"] % cfg["num_machines"] == 0, f"{path.name}: processes not a multiple of nodes"
        assert cfg["machine_rank"] == 0 and cfg["main_process_ip"] and isinstance(cfg["main_process_port"], int)
    assert {("MULTI_GPU", 0), ("DEEPSPEED", 2), ("DEEPSPEED", 3)} <= backends


def test_hostfile_parses_with_deepspeeds_parser_and_matches_the_pdsh_config():
    runner = pytest.importorskip("deepspeed.launcher.runner")
    hosts = runner._parse_hostfile(HOSTFILE.read_text().splitlines())
    users = [p for p in ACCELERATE_YAMLS
             if "deepspeed_hostfile" in yaml.safe_load(p.read_text()).get("deepspeed_config", {})]
    assert users
    for path in users:
        cfg = yaml.safe_load(path.read_text())
        assert REPO / cfg["deepspeed_config"]["deepspeed_hostfile"] == HOSTFILE
        assert cfg["num_machines"] == len(hosts) and cfg["num_processes"] == sum(hosts.values())
        assert cfg["main_process_ip"] == next(iter(hosts))  # DeepSpeed's main node: the hostfile's first


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("name", ["multinode_ddp.yaml", "multinode_zero2.yaml"])
def test_two_nodes_on_localhost_train_as_one_run(name, tiny_train_cfg, tmp_path):
    """The per-node commands of docs/multi_node.md, with both "nodes" on this machine and one process each."""
    from recgpt.train import checkpoint as ckpt

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    if "ddp" in name:
        env["ACCELERATE_USE_CPU"] = "1"
    port = free_port()
    steps = ["train.max_steps=2", "train.save_every=2", "train.eval_every=2", "train.log_every=1"]
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    procs = [subprocess.Popen(
        [accelerate, "launch", "--config_file", str(LAUNCH / "accelerate" / name),
         "--num_processes", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
         "--main_process_port", str(port), str(LAUNCH / "pretrain.py"), "--config", str(REPO / "configs" / "tiny.yaml"),
         *tiny_train_cfg.overrides(tmp_path), *steps],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    try:
        outs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"node {rank}:\n{out[-3000:]}"
    complete, _ = ckpt.list_checkpoints(tmp_path / "tiny")
    assert [c.name for c in complete] == ["step-00000002"]
    assert ckpt.read_meta(complete[-1])["world_size"] == 2
    assert {p.name for p in complete[-1].glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}
