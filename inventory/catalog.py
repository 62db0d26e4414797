"""The accelerator catalog and the regions: parsing the shipped CSV files (inventory/data/).

The CSVs are copies of the project's research data; they keep their source and confidence notes so a
buyer can see where each figure comes from. ECU: 1 ECU = 1 PFLOP/s of dense BF16 (FP16 where BF16 is
not published); a card with neither figure is "not rated" (None), never guessed.
"""

import csv
import re
from decimal import Decimal
from pathlib import Path

from django.utils.text import slugify

DATA_DIR = Path(__file__).resolve().parent / "data"
ACCELERATORS_CSV = DATA_DIR / "accelerators.csv"
REGIONS_CSV = DATA_DIR / "regions.csv"

# First word of the catalog's software_stack column -> the stack family buyers filter on.
STACK_BY_FIRST_WORD = {
    "cuda": "cuda",
    "rocm": "rocm",
    "cann": "cann",
    "cambricon": "neuware",
    "dtk": "dtk",
    "mxmaca": "maca",
    "musa": "musa",
    "birensupa": "birensupa",
    "iluvatar": "corex",
    "intel": "synapseai",
    "topsrider": "topsrider",
    "kunlunxin": "kunlun",
    "xla": "xla",
}


def ecu_per_card(*, bf16_dense_tflops: Decimal | None, fp16_dense_tflops: Decimal | None) -> Decimal | None:
    """Dense BF16 PFLOP/s per card, FP16 where BF16 is not published; None = not rated."""
    tflops = bf16_dense_tflops if bf16_dense_tflops is not None else fp16_dense_tflops
    if tflops is None:
        return None
    return (tflops / Decimal(1000)).quantize(Decimal("0.0001"))


def stack_family(software_stack: str) -> str:
    first = re.split(r"[\s(]", software_stack.strip(), maxsplit=1)[0].lower()
    try:
        return STACK_BY_FIRST_WORD[first]
    except KeyError:
        raise ValueError(f"unknown software stack {software_stack!r}") from None


def confidence(notes: str) -> str:
    """'conf=high for compute; ...' -> 'high for compute'."""
    match = re.match(r"\s*conf=([^.;]*)", notes)
    return match.group(1).strip() if match else ""


def _decimal(raw: str) -> Decimal | None:
    raw = raw.strip()
    return Decimal(raw) if raw else None


def _int(raw: str) -> int | None:
    raw = raw.strip()
    return int(Decimal(raw)) if raw else None


def accelerator_rows() -> list[dict]:
    """The catalog as model field values, one dict per accelerator model."""
    rows = []
    with ACCELERATORS_CSV.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            bf16 = _decimal(raw["bf16_dense_tflops"])
            fp16 = _decimal(raw["fp16_dense_tflops"])
            rows.append(
                {
                    "vendor": raw["vendor"].strip(),
                    "name": raw["model"].strip(),
                    "slug": slugify(f"{raw['vendor'].split()[0]} {raw['model']}")[:128],
                    "architecture": raw["arch"].strip(),
                    "year": _int(raw["year"]),
                    "memory_gb": _int(raw["memory_gb"]),
                    "memory_type": raw["memory_type"].strip(),
                    "memory_bandwidth_tbps": _decimal(raw["memory_bw_tbps"]),
                    "bf16_dense_tflops": bf16,
                    "fp16_dense_tflops": fp16,
                    "fp8_dense_tflops": _decimal(raw["fp8_dense_tflops"]),
                    "int8_dense_tops": _decimal(raw["int8_dense_tops"]),
                    "fp32_tflops": _decimal(raw["fp32_tflops"]),
                    "tdp_w": _int(raw["tdp_w"]),
                    "interconnect": raw["interconnect"].strip(),
                    "interconnect_gbps": _int(raw["interconnect_gbps"]),
                    "cards_per_server": _int(raw["cards_per_server"]) or 8,
                    "software_stack": raw["software_stack"].strip(),
                    "stack": stack_family(raw["software_stack"]),
                    "pytorch_route": raw["pytorch_route"].strip(),
                    "source": raw["source"].strip(),
                    "notes": raw["notes"].strip(),
                    "confidence": confidence(raw["notes"]),
                    "ecu_per_card": ecu_per_card(bf16_dense_tflops=bf16, fp16_dense_tflops=fp16),
                }
            )
    return rows


def region_rows() -> list[dict]:
    with REGIONS_CSV.open(newline="", encoding="utf-8") as handle:
        return [{key: value.strip() for key, value in raw.items()} for raw in csv.DictReader(handle)]


def load_catalog(*, accelerator_model_cls) -> int:
    """Insert or update every catalog row (by name). Used by the data migration and tests."""
    for row in accelerator_rows():
        accelerator_model_cls.objects.update_or_create(name=row["name"], defaults=row)
    return accelerator_model_cls.objects.count()


def load_regions(*, national_hub_cls, province_cls) -> int:
    for row in region_rows():
        hub = None
        if row["national_hub"]:
            hub, _ = national_hub_cls.objects.update_or_create(
                name=row["national_hub"], defaults={"name_zh": row["hub_zh"], "role": row["hub_role"]}
            )
        province_cls.objects.update_or_create(
            code=row["code"],
            defaults={
                "country": row["country"],
                "name": row["province"],
                "name_zh": row["province_zh"],
                "macro_region": row["macro_region"],
                "hub": hub,
                "hub_cluster": row["cluster"],
                "hub_cluster_zh": row["cluster_zh"],
            },
        )
    return province_cls.objects.count()
