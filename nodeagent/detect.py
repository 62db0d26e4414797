"""Finding the accelerators of this machine, and summarising them into the report the server expects.

Order: NVIDIA through NVML (nvidia-ml-py, imported lazily), else `nvidia-smi`; Huawei Ascend through
`npu-smi info`. A tool that is missing or fails is skipped with a debug log line.
"""

import logging
import platform
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from nodeagent import __version__
from nodeagent.parsers import (
    NPU_SMI_ARGS,
    NVIDIA_SMI_ARGS,
    Card,
    Detection,
    mib_to_gb,
    parse_npu_smi_info,
    parse_nvidia_smi_csv,
)

logger = logging.getLogger("nodeagent")

TOOL_TIMEOUT_SECONDS = 30
ASCEND_TOOLKIT_INFO = "/usr/local/Ascend/ascend-toolkit/latest/{arch}-linux/ascend_toolkit_install.info"


class NoAccelerators(Exception):
    """Nothing to report on this machine."""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def detect_nvml() -> Detection | None:
    """NVIDIA cards through NVML, or None when NVML (the driver library) is not available."""
    try:
        import pynvml
    except ImportError:
        logger.debug("nvidia-ml-py is not installed")
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        logger.debug("NVML is not available: %s", error)
        return None
    try:
        detection = Detection(source="nvml")
        detection.driver_version = _text(pynvml.nvmlSystemGetDriverVersion())
        try:
            cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            detection.software_versions["cuda"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except pynvml.NVMLError:
            pass
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                detection.cards.append(
                    Card(
                        index=index,
                        name=_text(pynvml.nvmlDeviceGetName(handle)),
                        memory_mib=pynvml.nvmlDeviceGetMemoryInfo(handle).total // (1024 * 1024),
                        serial=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    )
                )
            except pynvml.NVMLError as error:
                detection.cards.append(Card(index=index, name="", healthy=False, problem=str(error)))
        return detection
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _run(args: list[str]) -> str | None:
    if shutil.which(args[0]) is None:
        logger.debug("%s is not installed", args[0])
        return None
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        logger.warning("%s failed: %s", args[0], error)
        return None
    # nvidia-smi exits non-zero when one GPU is lost but still lists the others: keep its output.
    output = result.stdout + ("\n" + result.stderr if result.returncode and result.stderr else "")
    if result.returncode and not result.stdout.strip():
        logger.warning("%s exited with %s: %s", args[0], result.returncode, result.stderr.strip()[:300])
    return output


def detect_nvidia_smi() -> Detection | None:
    output = _run(NVIDIA_SMI_ARGS)
    return parse_nvidia_smi_csv(output) if output is not None else None


def _cann_version() -> str:
    path = Path(ASCEND_TOOLKIT_INFO.format(arch=platform.machine()))
    try:
        for line in path.read_text().splitlines():
            if line.startswith("version="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return ""


def detect_npu_smi() -> Detection | None:
    output = _run(NPU_SMI_ARGS)
    if output is None:
        return None
    detection = parse_npu_smi_info(output)
    cann = _cann_version()
    if cann:
        detection.software_versions["cann"] = cann
    return detection


def detect() -> Detection:
    """The accelerators of this machine. Raises NoAccelerators when no tool finds any."""
    nvidia = detect_nvml()
    if nvidia is None or not nvidia.cards:
        nvidia = detect_nvidia_smi() or nvidia
    for detection in (nvidia, detect_npu_smi()):
        if detection is not None and detection.cards:
            return detection
    raise NoAccelerators(
        "No accelerators found: neither NVML / nvidia-smi (NVIDIA) nor npu-smi (Huawei Ascend) reported a card. "
        "Install the vendor driver, or run with --simulate MODEL:COUNT to test without accelerators."
    )


def simulated(model: str, count: int) -> Detection:
    return Detection(
        source="simulate",
        cards=[Card(index=i, name=model) for i in range(count)],
        driver_version="simulated",
    )


def build_report(detection: Detection) -> dict:
    """The register body: the most common healthy model, how many healthy cards of it, their memory.

    Unhealthy cards are not counted - a node with a lost GPU reports fewer cards and the server
    flags it. A machine with several models reports the most common one (and logs the others).
    """
    for line in detection.errors:
        logger.warning("%s: %s", detection.source, line)
    for card in detection.cards:
        if not card.healthy:
            logger.warning(
                "%s: card %s (%s) is not usable: %s",
                detection.source,
                card.index,
                card.bus_id or card.serial,
                card.problem,
            )
    healthy = [card for card in detection.cards if card.healthy and card.name]
    if not healthy:
        raise NoAccelerators(f"{detection.source} found {len(detection.cards)} card(s), none of them usable.")
    counts = Counter(card.name for card in healthy)
    model, count = counts.most_common(1)[0]
    if len(counts) > 1:
        others = ", ".join(f"{n} x {name}" for name, n in counts.items() if name != model)
        logger.warning("several accelerator models on this machine; reporting %d x %s (also: %s)", count, model, others)
    memories = [card.memory_mib for card in healthy if card.name == model and card.memory_mib]
    software = {"nodeagent": __version__, "detected-by": detection.source, **detection.software_versions}
    return {
        "model_name": model[:200],
        "card_count": min(count, 64),
        "memory_gb": mib_to_gb(min(memories)) if memories else None,
        "driver_version": detection.driver_version[:100],
        "software_versions": {key[:64]: str(value)[:64] for key, value in list(software.items())[:32]},
    }
