"""The agent's parsers and report building, on captured tool output (tests/nodeagent/samples/).

Pure unit tests: no database, no server.
"""

from pathlib import Path

import pytest

from nodeagent import cli
from nodeagent.client import ServerUnavailable
from nodeagent.detect import NoAccelerators, build_report, simulated
from nodeagent.parsers import mib_to_gb, parse_npu_smi_info, parse_nvidia_smi_csv, parse_simulate

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


class TestNvidiaSmi:
    def test_eight_h100_are_eight_healthy_cards_of_80_gb(self):
        # given the csv output of an 8x H100 SXM server
        text = sample("nvidia_smi_8x_h100.csv")

        # when it is parsed and summarised
        detection = parse_nvidia_smi_csv(text)
        report = build_report(detection)

        # then every card is read, with its identity, and the report is 8 x H100 with 80 GB each
        assert len(detection.cards) == 8
        assert all(card.healthy for card in detection.cards)
        assert detection.cards[0].name == "NVIDIA H100 80GB HBM3"
        assert detection.cards[0].memory_mib == 81559
        assert detection.cards[0].serial.startswith("GPU-")
        assert detection.cards[7].bus_id == "00000000:DB:00.0"
        assert detection.driver_version == "535.129.03"
        assert report["model_name"] == "NVIDIA H100 80GB HBM3"
        assert report["card_count"] == 8
        assert report["memory_gb"] == 80
        assert report["driver_version"] == "535.129.03"
        assert report["software_versions"]["detected-by"] == "nvidia-smi"

    def test_a_lost_gpu_and_a_gpu_needing_reset_are_not_counted(self):
        # given one GPU fell off the bus (an error line) and another needs a reset (error fields)
        text = sample("nvidia_smi_h100_failed.csv")

        # when it is parsed and summarised
        detection = parse_nvidia_smi_csv(text)
        report = build_report(detection)

        # then the lost GPU is an error line, the one needing reset is an unhealthy card, and 6 are reported
        assert detection.errors == ["Unable to determine the device handle for GPU0000:BA:00.0: Unknown Error"]
        assert len(detection.cards) == 7
        unhealthy = [card for card in detection.cards if not card.healthy]
        assert [card.bus_id for card in unhealthy] == ["00000000:AB:00.0"]
        assert "[GPU requires reset]" in unhealthy[0].problem
        assert report["card_count"] == 6
        assert report["memory_gb"] == 80

    def test_a_machine_with_two_models_reports_the_most_common_one(self, caplog):
        # given 4 L40S and 2 L20 in one machine
        detection = parse_nvidia_smi_csv(sample("nvidia_smi_mixed_models.csv"))

        # when summarised
        report = build_report(detection)

        # then it reports the 4 L40S (45 GB usable of the 48 GB marketing figure) and warns about the rest
        assert report["model_name"] == "NVIDIA L40S"
        assert report["card_count"] == 4
        assert report["memory_gb"] == 45
        assert "2 x NVIDIA L20" in caplog.text

    def test_no_devices_found_is_no_accelerators(self):
        detection = parse_nvidia_smi_csv("No devices were found\n")

        assert detection.cards == []
        assert detection.errors == ["No devices were found"]
        with pytest.raises(NoAccelerators):
            build_report(detection)


class TestNpuSmi:
    def test_eight_910b3_are_eight_healthy_cards_of_64_gb_and_processes_are_ignored(self):
        # given `npu-smi info` of an Atlas 800T A2 with 8x 910B3, two of them running a job
        text = sample("npu_smi_info_8x_910b3.txt")

        # when it is parsed and summarised
        detection = parse_npu_smi_info(text)
        report = build_report(detection)

        # then 8 cards are read (the process table adds none), with bus id and HBM size
        assert [card.index for card in detection.cards] == list(range(8))
        assert {card.name for card in detection.cards} == {"910B3"}
        assert all(card.healthy for card in detection.cards)
        assert detection.cards[0].bus_id == "0000:C1:00.0"
        assert detection.cards[0].memory_mib == 65536
        assert detection.driver_version == "23.0.7"
        assert report["model_name"] == "910B3"
        assert report["card_count"] == 8
        assert report["memory_gb"] == 64

    def test_a_critical_npu_is_not_counted_and_a_warning_one_is(self):
        # given one NPU in Critical health and one in Warning
        detection = parse_npu_smi_info(sample("npu_smi_info_910b3_critical.txt"))

        # when summarised
        report = build_report(detection)

        # then only the critical one is left out
        assert [card.index for card in detection.cards if not card.healthy] == [3]
        assert report["card_count"] == 7
        assert detection.driver_version == "24.1.rc2"

    def test_a_310p_without_hbm_takes_its_memory_usage_total(self):
        text = (
            "| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|\n"
            "| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)                        |\n"
            "+===========================+===============+====================================================+\n"
            "| 0     310P3               | OK            | NA          45                0     / 0            |\n"
            "| 0                         | 0000:01:00.0  | 0           1663  / 21527                          |\n"
        )

        card = parse_npu_smi_info(text).cards[0]

        assert (card.name, card.memory_mib, card.bus_id) == ("310P3", 21527, "0000:01:00.0")

    def test_text_without_a_table_has_no_cards(self):
        assert parse_npu_smi_info("dcmi module initialize failed. ret is -8005\n").cards == []


class TestSimulate:
    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            ("H100 SXM5 80GB:8", ("H100 SXM5 80GB", 8)),
            ("Ascend 910B3:16", ("Ascend 910B3", 16)),
            ("weird:name:2", ("weird:name", 2)),
        ],
    )
    def test_model_and_count(self, spec, expected):
        assert parse_simulate(spec) == expected

    @pytest.mark.parametrize("spec", ["H100", ":8", "H100:eight", "H100:0", "H100:65"])
    def test_bad_specs_are_refused_with_a_reason(self, spec):
        with pytest.raises(ValueError, match="simulate"):
            parse_simulate(spec)

    def test_a_simulated_report_has_no_memory_and_says_so(self):
        report = build_report(simulated("Ascend 910B3", 8))

        assert report["model_name"] == "Ascend 910B3"
        assert report["card_count"] == 8
        assert report["memory_gb"] is None
        assert report["driver_version"] == "simulated"
        assert report["software_versions"]["detected-by"] == "simulate"


@pytest.mark.parametrize(("mib", "gb"), [(81559, 80), (46068, 45), (65536, 64), (24564, 24), (97871, 96), (100, 1)])
def test_memory_is_rounded_to_whole_gb(mib, gb):
    assert mib_to_gb(mib) == gb


class TestRetry:
    def test_unreachable_server_is_retried_with_growing_delays_then_given_up(self, caplog):
        # given a server that never answers
        delays = []

        def call():
            raise ServerUnavailable("cannot connect")

        # when the agent calls it with 4 attempts allowed
        with pytest.raises(cli.GaveUp, match="after 4 attempt"):
            cli.with_retry(call, what="register", max_attempts=4, sleep=delays.append)

        # then it waited about 1, 2, 4 seconds in between and logged each retry
        assert len(delays) == 3
        assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4 and 3.2 <= delays[2] <= 4.8
        assert caplog.text.count("server unreachable") == 3

    def test_a_server_that_comes_back_is_used(self):
        answers = iter([ServerUnavailable("down"), {"ok": True}])

        def call():
            answer = next(answers)
            if isinstance(answer, Exception):
                raise answer
            return answer

        assert cli.with_retry(call, what="heartbeat", max_attempts=None, sleep=lambda _s: None) == {"ok": True}


def test_no_accelerators_and_no_simulate_exits_with_a_clear_message(monkeypatch, caplog):
    # given a machine where no tool finds a card
    def nothing():
        raise NoAccelerators("No accelerators found: ... run with --simulate MODEL:COUNT")

    monkeypatch.setattr(cli, "detect", nothing)

    # when the agent starts without --simulate
    code = cli.main(["--server", "http://127.0.0.1:9", "--token", "cfa_whatever_whatever"])

    # then it exits with its own code and says what to do
    assert code == cli.EXIT_NO_ACCELERATORS
    assert "--simulate" in caplog.text
