"""The rule that decides whether a reported accelerator name is the listed catalog model."""

import pytest

from inventory.agent_services import accelerator_names_match, report_mismatch_reason
from inventory.catalog import accelerator_rows
from inventory.models import AcceleratorModel

CATALOG_NAMES = [row["name"] for row in accelerator_rows()]

# What the tools really print (NVML / nvidia-smi, npu-smi, amd-smi, vendor tools), and the one
# catalog entry each denotes - None when the catalog has no such card.
REALISTIC = [
    ("NVIDIA H100 80GB HBM3", "H100 SXM5 80GB"),
    ("NVIDIA H100 PCIe", "H100 PCIe 80GB"),
    ("NVIDIA H100 NVL", None),
    ("NVIDIA H200", "H200 SXM 141GB"),
    ("NVIDIA H200 NVL", None),
    ("NVIDIA H20", "H20 96GB"),
    ("NVIDIA H800", "H800 SXM5 80GB"),
    ("NVIDIA H800 PCIe", None),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
    ("NVIDIA A100-SXM4-40GB", None),
    ("NVIDIA A100 80GB PCIe", None),
    ("NVIDIA A100-PCIE-40GB", None),
    ("NVIDIA A800-SXM4-80GB", "A800 SXM4 80GB"),
    ("NVIDIA L40S", "L40S 48GB"),
    ("NVIDIA L40", None),
    ("NVIDIA L20", "L20 48GB"),
    ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090 24GB"),
    ("NVIDIA GeForce RTX 4090 D", None),
    ("NVIDIA B200", "B200 (HGX, 1000W)"),
    ("Tesla V100-SXM2-32GB", None),
    ("AMD Instinct MI300X", "Instinct MI300X 192GB"),
    ("AMD Instinct MI250X/MI250", "Instinct MI250X 128GB (OAM)"),
    ("910B3", "Ascend 910B3"),
    ("910B", "Ascend 910B (generic / Atlas 800T A2)"),
    ("910B4", "Ascend 910B4 (32GB) / 910B4-1 (64GB)"),
    ("910B4-1", "Ascend 910B4 (32GB) / 910B4-1 (64GB)"),
    ("Ascend910B2", "Ascend 910B2"),
    ("Huawei Ascend 910B1", "Ascend 910B1"),
    ("310P3", "Ascend 310P3 (Atlas 300I Pro card, 1 chip)"),
    ("MLU370-X8", "MLU370-X8"),
    ("MetaX C500", "Xiyun C500"),
    ("MTT S4000", "MTT S4000 48GB"),
    ("Iluvatar BI-V150", "Tiangai 150 (BI-V150)"),
    ("Hygon DCU K100-AI", "DCU K100-AI"),
    ("Hygon DCU K100", "DCU K100 (Shensuan-2)"),
]


@pytest.mark.parametrize(("reported", "expected"), REALISTIC)
def test_a_realistic_tool_name_matches_exactly_its_catalog_model(reported, expected):
    # given a name a tool prints, when compared with every catalog model
    matches = [name for name in CATALOG_NAMES if accelerator_names_match(reported=reported, listed=name)]

    # then it matches only the model it denotes (or none)
    assert matches == ([expected] if expected else [])


@pytest.mark.parametrize("name", CATALOG_NAMES)
def test_every_catalog_name_matches_itself_only(name):
    # (what `--simulate "<catalog name>:8"` reports)
    matches = [other for other in CATALOG_NAMES if accelerator_names_match(reported=name, listed=other)]

    assert matches == [name]


@pytest.mark.parametrize(
    "reported", ["h100 sxm5 80gb", "  H100   SXM5  80GB ", "NVIDIA H100-SXM5-80GB", "NVIDIA H100 SXM5 80GB HBM3"]
)
def test_case_spaces_separators_and_vendor_prefixes_do_not_matter(reported):
    assert accelerator_names_match(reported=reported, listed="H100 SXM5 80GB")


@pytest.mark.parametrize("reported", ["", "   ", "GPU", "NVIDIA", "80GB"])
def test_a_name_without_a_model_matches_nothing(reported):
    assert not any(accelerator_names_match(reported=reported, listed=name) for name in CATALOG_NAMES)


class TestMismatchReason:
    listed = AcceleratorModel(name="H100 SXM5 80GB", memory_gb=80)

    def reason(self, **report):
        values = {"reported_model_name": "NVIDIA H100 80GB HBM3", "reported_card_count": 8, "reported_memory_gb": 80}
        values.update(report)
        return report_mismatch_reason(listed_model=self.listed, listed_card_count=8, **values)

    def test_a_matching_report_has_no_reason(self):
        assert self.reason() == ""

    def test_more_cards_than_listed_is_fine(self):
        assert self.reason(reported_card_count=10) == ""

    def test_fewer_cards_names_both_counts(self):
        assert self.reason(reported_card_count=6) == "agent sees 6 cards, listing says 8"

    def test_another_model_names_both(self):
        assert self.reason(reported_model_name="NVIDIA A100-SXM4-80GB") == (
            'agent sees "NVIDIA A100-SXM4-80GB", listing says "H100 SXM5 80GB"'
        )

    def test_much_less_memory_is_a_mismatch_but_usable_memory_is_not(self):
        assert self.reason(reported_memory_gb=40) == "agent sees 40 GB per card, listing says 80 GB"
        assert self.reason(reported_memory_gb=76) == ""
        assert self.reason(reported_memory_gb=None) == ""

    def test_several_reasons_are_joined(self):
        assert self.reason(reported_model_name="910B3", reported_card_count=4) == (
            'agent sees "910B3", listing says "H100 SXM5 80GB"; agent sees 4 cards, listing says 8'
        )

    def test_no_report_yet_is_no_mismatch(self):
        assert self.reason(reported_model_name="", reported_card_count=None) == ""
