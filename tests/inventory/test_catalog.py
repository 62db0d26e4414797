from decimal import Decimal

import pytest

from inventory.catalog import accelerator_rows, confidence, ecu_per_card, stack_family
from inventory.models import AcceleratorModel, NationalHub, Province


def test_ecu_is_dense_bf16_in_petaflops():
    assert ecu_per_card(bf16_dense_tflops=Decimal("989"), fp16_dense_tflops=Decimal("989")) == Decimal("0.9890")


def test_ecu_falls_back_to_fp16_when_bf16_is_not_published():
    assert ecu_per_card(bf16_dense_tflops=None, fp16_dense_tflops=Decimal("70")) == Decimal("0.0700")


def test_a_card_with_no_published_figure_is_not_rated():
    assert ecu_per_card(bf16_dense_tflops=None, fp16_dense_tflops=None) is None


def test_stack_family_and_confidence_are_read_from_the_catalog_text():
    assert stack_family("CANN (AscendCL, HCCL)") == "cann"
    assert stack_family("ROCm (HIP)") == "rocm"
    assert confidence("conf=low-medium. '910B' is ambiguous") == "low-medium"
    with pytest.raises(ValueError):
        stack_family("Brainwave SDK")


def test_every_catalog_row_parses_with_its_source_kept():
    rows = accelerator_rows()
    assert len(rows) == 40
    assert len({row["vendor"] for row in rows}) == 13  # 12 accelerator vendors plus Google TPU
    assert all(row["source"] for row in rows)
    assert all(row["confidence"] for row in rows)


@pytest.mark.django_db
def test_the_data_migration_loads_the_catalog_with_ecu_values():
    # Given the migrated database (the data migration ran), then the catalog is there
    assert AcceleratorModel.objects.count() == 40
    h100 = AcceleratorModel.objects.get(name="H100 SXM5 80GB")
    assert h100.ecu_per_card == Decimal("0.9890")
    assert h100.stack == "cuda"
    ascend = AcceleratorModel.objects.get(name="Ascend 910B (generic / Atlas 800T A2)")
    assert ascend.ecu_per_card == Decimal("0.3200")
    assert ascend.stack == "cann"
    # FP16 stands in where BF16 is not published (Ascend 310P3 publishes FP16 only)
    assert AcceleratorModel.objects.get(name__startswith="Ascend 310P3").ecu_per_card == Decimal("0.0700")
    # and cards with neither are "not rated", never guessed
    not_rated = set(AcceleratorModel.objects.filter(ecu_per_card__isnull=True).values_list("name", flat=True))
    assert {"Ascend 910B1", "MLU590 (MLU590-M9 OAM)", "DCU Z100 (Shensuan-1)"} <= not_rated
    assert all("conf=" in notes for notes in AcceleratorModel.objects.values_list("notes", flat=True))


@pytest.mark.django_db
def test_the_data_migration_loads_regions_and_the_eight_national_hubs():
    assert Province.objects.count() == 33
    assert NationalHub.objects.count() == 8
    guizhou = Province.objects.get(code="CN-GZ")
    assert guizhou.hub.name == "Guizhou" and guizhou.hub.role == "resource"
    assert guizhou.hub_cluster == "Gui'an"
    assert Province.objects.get(code="CN-SH").hub.role == "demand"
    assert Province.objects.get(code="CN-SX").hub is None
