"""The container command lines the agent runs to start and stop a buyer's workload on exactly its cards.

Every vendor exposes its cards to a container differently: NVIDIA through the container toolkit's
`--gpus`, AMD (ROCm) and Hygon (DTK) through the KFD compute node plus one DRI render node per card,
Huawei Ascend through one `/dev/davinciN` per card plus the driver's management devices and the
driver libraries mounted read-only, and so on. `plan_start` turns a desired workload into the exact
argv for the container runtime's command line (docker, or podman with the same flags); nothing here
runs anything, so the plans are tested as plain data (tests/nodeagent/test_containers.py) and
`--simulate` can report them without a runtime.

The device paths are the vendors' documented ones for their container setups; NVIDIA, AMD and
Ascend are the ones this project checks exactly. A stack with no mapping here (Biren's BIRENSUPA,
Google's TPUs, which are not rented as servers) is refused with `UnsupportedStack`, and the agent
reports the boot as failed with that reason - never started on the wrong devices.
"""

from dataclasses import dataclass, field

CONTAINER_PREFIX = "computeflow-r"
SSH_CONTAINER_PORT = 22
SHM_SIZE = "16g"  # PyTorch data loaders need more than docker's 64 MB; --ipc=host would share IPC between tenants


# The container's first process, whatever the image's own entrypoint: the launch templates' images
# (vendor CUDA/ROCm bases, PyTorch, vLLM, plain Ubuntu) have no SSH server and some exit at once
# without a terminal. It installs the buyer's keys as root's authorized_keys, installs OpenSSH when
# the image lacks it (apt, dnf or yum), and runs sshd in the foreground with keys only - so the
# container lives exactly as long as the buyer's SSH service, and the buyer starts the rest.
BOOT_SCRIPT = (
    "set -e; "
    "mkdir -p /root/.ssh /run/sshd; chmod 700 /root/.ssh; "
    'printf "%s\\n" "$SSH_AUTHORIZED_KEYS" > /root/.ssh/authorized_keys; chmod 600 /root/.ssh/authorized_keys; '
    "if [ ! -x /usr/sbin/sshd ]; then "
    "if command -v apt-get >/dev/null 2>&1; then "
    "DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; "
    "elif command -v dnf >/dev/null 2>&1; then dnf install -y -q openssh-server; "
    "else yum install -y -q openssh-server; fi; fi; "
    "ssh-keygen -A >/dev/null; "
    "exec /usr/sbin/sshd -D -e -o PasswordAuthentication=no -o PermitRootLogin=prohibit-password"
)


class UnsupportedStack(ValueError):
    pass


@dataclass(frozen=True)
class Workload:
    """What the platform asks this node to run for one reservation."""

    reservation_id: int
    stack: str  # inventory.models.SoftwareStack value of the node's cards: "cuda", "cann", "rocm", ...
    device_indices: tuple[int, ...]  # the node-local indices of the reserved cards (0-based)
    image: str
    ssh_public_keys: tuple[str, ...] = ()
    ssh_host_port: int = 2222
    # Per-card DRI render nodes where the detector found them (AMD, Hygon, MetaX); else renderD(128 + index).
    render_nodes: dict[int, str] = field(default_factory=dict)


def container_name(reservation_id: int) -> str:
    return f"{CONTAINER_PREFIX}{reservation_id}"


def _render_node(workload: Workload, index: int) -> str:
    return workload.render_nodes.get(index, f"/dev/dri/renderD{128 + index}")


def _devices(*paths: str) -> list[str]:
    return [f"--device={path}" for path in paths]


def _read_only(*paths: str) -> list[str]:
    return [f"--volume={path}:{path}:ro" for path in paths]


def _device_flags(workload: Workload) -> list[str]:
    indices = workload.device_indices
    csv = ",".join(str(index) for index in indices)
    stack = workload.stack
    if stack == "cuda":
        # The quotes are part of the value: docker parses --gpus as CSV, and "device=0,1" names two cards.
        return ["--gpus", f'"device={csv}"']
    if stack in {"rocm", "dtk"}:
        flags = _devices("/dev/kfd", *(_render_node(workload, i) for i in indices))
        if stack == "dtk":
            flags = _devices("/dev/mkfd") + flags  # Hygon's DCU driver adds its own memory device
        return [*flags, "--group-add=video", "--group-add=render"]
    if stack == "cann":
        return [
            *_devices(*(f"/dev/davinci{i}" for i in indices)),
            *_devices("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc"),
            *_read_only("/usr/local/Ascend/driver", "/usr/local/dcmi", "/usr/local/bin/npu-smi"),
            f"--env=ASCEND_VISIBLE_DEVICES={csv}",
        ]
    if stack == "neuware":
        return [*_devices(*(f"/dev/cambricon_dev{i}" for i in indices), "/dev/cambricon_ctl"),
                *_read_only("/usr/bin/cnmon")]
    if stack == "maca":
        return [*_devices("/dev/mxcd", *(_render_node(workload, i) for i in indices)), "--group-add=video"]
    if stack == "musa":
        return ["--runtime=mthreads", f"--env=MTHREADS_VISIBLE_DEVICES={csv}"]
    if stack == "synapseai":
        return ["--runtime=habana", f"--env=HABANA_VISIBLE_DEVICES={csv}", "--cap-add=sys_nice"]
    if stack == "corex":
        return _devices(*(f"/dev/iluvatar{i}" for i in indices))
    if stack == "topsrider":
        return _devices(*(f"/dev/gcu{i}" for i in indices))
    if stack == "kunlun":
        return _devices(*(f"/dev/xpu{i}" for i in indices), "/dev/xpuctrl")
    raise UnsupportedStack(f"no container device mapping for the {stack!r} software stack on this agent")


def plan_start(workload: Workload, *, runtime: str = "docker") -> list[str]:
    """The argv that starts the workload detached, on exactly the reserved cards, reachable over SSH."""
    if not workload.device_indices:
        raise ValueError("a workload needs at least one card")
    if len(set(workload.device_indices)) != len(workload.device_indices) or min(workload.device_indices) < 0:
        raise ValueError(f"bad card indices {workload.device_indices}")
    return [
        runtime, "run", "--detach",
        f"--name={container_name(workload.reservation_id)}",
        f"--label=computeflow.reservation={workload.reservation_id}",
        "--restart=no",
        f"--shm-size={SHM_SIZE}",
        f"--publish={workload.ssh_host_port}:{SSH_CONTAINER_PORT}",
        # BOOT_SCRIPT installs these as root's authorized_keys and starts sshd.
        f"--env=SSH_AUTHORIZED_KEYS={chr(10).join(workload.ssh_public_keys)}",
        *_device_flags(workload),
        "--entrypoint=/bin/sh",
        workload.image,
        "-c",
        BOOT_SCRIPT,
    ]


def plan_stop(reservation_id: int, *, runtime: str = "docker") -> list[str]:
    """The argv that stops and removes the workload; "no such container" means already stopped."""
    return [runtime, "rm", "--force", container_name(reservation_id)]
