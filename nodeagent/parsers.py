"""Parsers for what the accelerator tools print. Pure functions over text: tested on captured output.

nvidia-smi is queried in its scripting format:

    nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version,pci.bus_id \
               --format=csv,noheader,nounits

which prints one line per GPU ("0, NVIDIA H100 80GB HBM3, GPU-..., 81559, 535.129.03, 00000000:18:00.0",
memory in MiB). A GPU that has fallen off the bus prints "Unable to determine the device handle for
GPU...: Unknown Error" instead of a row, and a GPU in trouble prints bracketed errors such as
"[GPU requires reset]" or "[Unknown Error]" in its fields.

`npu-smi info` prints a table with two rows per NPU - "| 0  910B3 | OK | power temp hugepages |" and
"| 0 | 0000:C1:00.0 | aicore memory hbm |" (memory in MB) - followed by a process table.
"""

import re
from dataclasses import dataclass, field

NVIDIA_SMI_QUERY = "index,name,uuid,memory.total,driver_version,pci.bus_id"
NVIDIA_SMI_ARGS = ["nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"]
NPU_SMI_ARGS = ["npu-smi", "info"]

# npu-smi health values; Alarm and Critical mean the card cannot be trusted with a job.
NPU_USABLE_HEALTH = frozenset({"OK", "Warning"})


@dataclass
class Card:
    """One accelerator as a tool sees it."""

    index: int | None
    name: str
    memory_mib: int | None = None
    serial: str = ""
    bus_id: str = ""
    healthy: bool = True
    problem: str = ""  # why the card is not healthy


@dataclass
class Detection:
    """What one tool found on this machine."""

    source: str  # "nvml", "nvidia-smi", "npu-smi", "simulate"
    cards: list[Card] = field(default_factory=list)
    driver_version: str = ""
    software_versions: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # tool lines about cards it could not read


def mib_to_gb(memory_mib: int) -> int:
    """Memory per card in whole GB as the catalog states it: tools report usable MiB (81559 for an
    "80GB" H100), so round to the nearest GiB."""
    return max(1, round(memory_mib / 1024))


def _is_error_field(value: str) -> bool:
    return value.startswith("[") and value.endswith("]")


def parse_nvidia_smi_csv(text: str) -> Detection:
    """Cards from `nvidia-smi --query-gpu=<NVIDIA_SMI_QUERY> --format=csv,noheader,nounits`."""
    detection = Detection(source="nvidia-smi")
    drivers = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        fields = [part.strip() for part in line.split(",")]
        if len(fields) < 5 or not fields[0].isdigit():
            # "Unable to determine the device handle for GPU0000:BA:00.0: Unknown Error", "No devices were found"
            detection.errors.append(line)
            continue
        index, name, serial, memory, driver = fields[:5]
        bus_id = fields[5] if len(fields) > 5 else ""
        problems = [value for value in (name, memory) if _is_error_field(value)]
        memory_mib = int(memory) if memory.isdigit() else None
        if memory_mib is None and not problems:
            problems.append(f"unreadable memory {memory!r}")
        card = Card(
            index=int(index),
            name=name,
            memory_mib=memory_mib,
            serial="" if _is_error_field(serial) else serial,
            bus_id=bus_id,
            healthy=not problems,
            problem=", ".join(problems),
        )
        detection.cards.append(card)
        if not _is_error_field(driver):
            drivers.append(driver)
    detection.driver_version = drivers[0] if drivers else ""
    return detection


_NPU_VERSION = re.compile(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)")
_NPU_NAME_ROW = re.compile(r"^\|\s*(\d+)\s+(\S+)\s*\|\s*([A-Za-z]+)\s*\|")
_NPU_CHIP_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*([0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)\s*\|(.*)\|\s*$")
_USED_TOTAL = re.compile(r"(\d+)\s*/\s*(\d+)")


def parse_npu_smi_info(text: str) -> Detection:
    """Cards from `npu-smi info` (one per NPU id; its first chip gives the bus id and memory)."""
    detection = Detection(source="npu-smi")
    version = _NPU_VERSION.search(text)
    if version:
        detection.driver_version = version.group(2)
        detection.software_versions["npu-smi"] = version.group(1)
    current: Card | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if "Process id" in line:
            break  # the process table follows; its rows look like card rows
        name_row = _NPU_NAME_ROW.match(line)
        if name_row and not name_row.group(2).isdigit():
            index, name, health = int(name_row.group(1)), name_row.group(2), name_row.group(3)
            current = Card(
                index=index,
                name=name,
                healthy=health in NPU_USABLE_HEALTH,
                problem="" if health in NPU_USABLE_HEALTH else f"health {health}",
            )
            detection.cards.append(current)
            continue
        chip_row = _NPU_CHIP_ROW.match(line)
        if chip_row and current is not None and not current.bus_id:
            current.bus_id = chip_row.group(2)
            pairs = _USED_TOTAL.findall(chip_row.group(3))
            # 910-series: "Memory-Usage 0 / 0  HBM-Usage 3338 / 65536"; 310P: only Memory-Usage.
            totals = [int(total) for _used, total in pairs if int(total) > 0]
            if totals:
                current.memory_mib = totals[-1]
    return detection


def parse_simulate(spec: str) -> tuple[str, int]:
    """'H100 SXM5 80GB:8' -> ("H100 SXM5 80GB", 8). The model name may itself contain colons."""
    model, sep, count = spec.rpartition(":")
    model = model.strip()
    if not sep or not model:
        raise ValueError(f"--simulate wants MODEL:COUNT, for example 'H100 SXM5 80GB:8' (got {spec!r})")
    try:
        cards = int(count)
    except ValueError:
        raise ValueError(f"--simulate: the card count must be a whole number (got {count!r})") from None
    if not 1 <= cards <= 64:
        raise ValueError(f"--simulate: the card count must be between 1 and 64 (got {cards})")
    return model, cards


# ---------------------------------------------------------------------------------------------
# Usage readings (for the usage samples): utilization, memory in use, power, per card index
# ---------------------------------------------------------------------------------------------

NVIDIA_SMI_USAGE_QUERY = "index,utilization.gpu,memory.used,power.draw"
NVIDIA_SMI_USAGE_ARGS = ["nvidia-smi", f"--query-gpu={NVIDIA_SMI_USAGE_QUERY}", "--format=csv,noheader,nounits"]


@dataclass
class Reading:
    """One card's state at one instant."""

    index: int
    utilization_percent: float  # share of the last sampling period in which the card was busy
    memory_used_mib: int
    power_watts: float


def _reading_number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None  # "[N/A]", "[Unknown Error]", "N/A"
    return number if number >= 0 else None


def parse_nvidia_smi_usage(text: str) -> dict[int, Reading]:
    """Readings from `nvidia-smi --query-gpu=<NVIDIA_SMI_USAGE_QUERY> --format=csv,noheader,nounits`
    ("0, 87, 61234, 612.45"). A card whose utilization or memory is unreadable is left out (no
    sample is better than a made-up one); an unreadable power draw (cards without a sensor) is 0."""
    readings = {}
    for raw in text.splitlines():
        fields = [part.strip() for part in raw.split(",")]
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        utilization, memory, power = (_reading_number(value) for value in fields[1:])
        if utilization is None or memory is None or utilization > 100:
            continue
        index = int(fields[0])
        readings[index] = Reading(index, utilization, int(memory), power or 0.0)
    return readings


def parse_npu_smi_usage(text: str) -> dict[int, Reading]:
    """Readings from `npu-smi info`: power from an NPU's first row, AI Core utilization and HBM
    in use from its first chip row (memory in MB, taken as MiB as npu-smi means it). Cards whose
    health is not usable are left out, as detection leaves them out."""
    readings = {}
    current: tuple[int, float] | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if "Process id" in line:
            break
        name_row = _NPU_NAME_ROW.match(line)
        if name_row and not name_row.group(2).isdigit():
            rest = line[name_row.end() :].strip(" |").split()
            power = _reading_number(rest[0]) if rest else None
            usable = name_row.group(3) in NPU_USABLE_HEALTH
            current = (int(name_row.group(1)), power or 0.0) if usable else None
            continue
        chip_row = _NPU_CHIP_ROW.match(line)
        if chip_row and current is not None:
            index, power = current
            current = None  # only the NPU's first chip
            values = chip_row.group(3).split()
            utilization = _reading_number(values[0]) if values else None
            pairs = _USED_TOTAL.findall(chip_row.group(3))
            used = [int(used) for used, total in pairs if int(total) > 0]
            if utilization is None or utilization > 100 or not used:
                continue
            readings[index] = Reading(index, utilization, used[-1], power)
    return readings
