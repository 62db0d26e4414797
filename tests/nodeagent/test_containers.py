"""The exact container command lines the agent plans for a reservation, per vendor."""

import subprocess

import pytest

from nodeagent.containers import BOOT_SCRIPT, UnsupportedStack, Workload, plan_start, plan_stop

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl buyer@laptop"
COMMON = [
    "--restart=no",
    "--shm-size=16g",
    "--publish=2201:22",
    f"--env=SSH_AUTHORIZED_KEYS={KEY}",
]


# Every container starts with the boot script (buyer's keys, sshd in the foreground) as its first process.
BOOT_BEFORE = ["--entrypoint=/bin/sh"]
BOOT_AFTER = ["-c", BOOT_SCRIPT]


def _workload(stack: str, indices: tuple[int, ...], image: str, **extra) -> Workload:
    return Workload(reservation_id=42, stack=stack, device_indices=indices, image=image,
                    ssh_public_keys=(KEY,), ssh_host_port=2201, **extra)


def test_an_nvidia_reservation_gets_exactly_its_cards_through_the_container_toolkit():
    # Given cards 2 and 3 of an H100 node reserved for a PyTorch workload
    workload = _workload("cuda", (2, 3), "nvcr.io/nvidia/pytorch:24.10-py3")
    # Then docker gets those two cards and nothing else
    assert plan_start(workload) == [
        "docker", "run", "--detach", "--name=computeflow-r42", "--label=computeflow.reservation=42", *COMMON,
        "--gpus", '"device=2,3"',
        *BOOT_BEFORE, "nvcr.io/nvidia/pytorch:24.10-py3", *BOOT_AFTER,
    ]


def test_an_ascend_reservation_gets_its_davinci_devices_the_management_devices_and_the_driver_read_only():
    workload = _workload("cann", (0, 1, 4), "ascendhub.huawei.com/public-ascendhub/pytorch-npu:2.1.0")
    assert plan_start(workload) == [
        "docker", "run", "--detach", "--name=computeflow-r42", "--label=computeflow.reservation=42", *COMMON,
        "--device=/dev/davinci0", "--device=/dev/davinci1", "--device=/dev/davinci4",
        "--device=/dev/davinci_manager", "--device=/dev/devmm_svm", "--device=/dev/hisi_hdc",
        "--volume=/usr/local/Ascend/driver:/usr/local/Ascend/driver:ro",
        "--volume=/usr/local/dcmi:/usr/local/dcmi:ro",
        "--volume=/usr/local/bin/npu-smi:/usr/local/bin/npu-smi:ro",
        "--env=ASCEND_VISIBLE_DEVICES=0,1,4",
        *BOOT_BEFORE, "ascendhub.huawei.com/public-ascendhub/pytorch-npu:2.1.0", *BOOT_AFTER,
    ]


def test_an_amd_reservation_gets_the_compute_node_and_one_render_node_per_card():
    # Given cards 1 and 5, whose render nodes the detector found (card 1) or did not (card 5)
    workload = _workload("rocm", (1, 5), "rocm/pytorch:latest", render_nodes={1: "/dev/dri/renderD136"})
    assert plan_start(workload, runtime="podman") == [
        "podman", "run", "--detach", "--name=computeflow-r42", "--label=computeflow.reservation=42", *COMMON,
        "--device=/dev/kfd", "--device=/dev/dri/renderD136", "--device=/dev/dri/renderD133",
        "--group-add=video", "--group-add=render",
        *BOOT_BEFORE, "rocm/pytorch:latest", *BOOT_AFTER,
    ]


@pytest.mark.parametrize(
    ("stack", "device_flags"),
    [
        ("dtk", ["--device=/dev/mkfd", "--device=/dev/kfd", "--device=/dev/dri/renderD128", "--group-add=video", "--group-add=render"]),
        ("neuware", ["--device=/dev/cambricon_dev0", "--device=/dev/cambricon_ctl", "--volume=/usr/bin/cnmon:/usr/bin/cnmon:ro"]),
        ("kunlun", ["--device=/dev/xpu0", "--device=/dev/xpuctrl"]),
        ("synapseai", ["--runtime=habana", "--env=HABANA_VISIBLE_DEVICES=0", "--cap-add=sys_nice"]),
    ],
)
def test_other_vendors_get_their_own_device_flags(stack, device_flags):
    argv = plan_start(_workload(stack, (0,), "image:tag"))
    assert argv[-3:] == ["image:tag", *BOOT_AFTER]
    assert argv[-4 - len(device_flags):-4] == device_flags


@pytest.mark.parametrize("stack", ["birensupa", "xla", "made-up"])
def test_a_stack_without_a_device_mapping_is_refused_never_started_on_other_devices(stack):
    with pytest.raises(UnsupportedStack, match=stack):
        plan_start(_workload(stack, (0,), "image:tag"))


@pytest.mark.parametrize("indices", [(), (1, 1), (-1,)])
def test_bad_card_lists_are_refused(indices):
    with pytest.raises(ValueError):
        plan_start(_workload("cuda", indices, "image:tag"))


def test_stopping_removes_the_reservations_container():
    assert plan_stop(42) == ["docker", "rm", "--force", "computeflow-r42"]


def test_the_boot_script_is_valid_shell_that_installs_the_keys_and_runs_sshd_with_keys_only():
    assert subprocess.run(["sh", "-n", "-c", BOOT_SCRIPT], capture_output=True).returncode == 0
    assert '"$SSH_AUTHORIZED_KEYS" > /root/.ssh/authorized_keys' in BOOT_SCRIPT
    assert BOOT_SCRIPT.endswith("exec /usr/sbin/sshd -D -e -o PasswordAuthentication=no -o PermitRootLogin=prohibit-password")
