"""A reservation's reasons read in the reader's language: the template from the catalog, times in the
reader's zone with the zone named, money by format_money, and the word parameters (where the cards moved,
the models the buyer accepted, a node's status) built at reading time, not stored as English."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from django.utils import translation

from marketplace.reasons import ReasonCode, money_param, render_reason, time_param

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = time_param(datetime(2026, 12, 10, 1, 0, tzinfo=UTC))


def test_a_failover_that_found_no_cards_in_both_languages():
    params = {"node": "h100-a", "at": AT, "cards": 8, "accepted_models": ["A100 SXM4 80GB", "H800 SXM5 80GB"]}
    english = render_reason(ReasonCode.FAILOVER_NO_CAPACITY, params, tz=SHANGHAI)
    assert "(same model in this cluster or national hub, or the models you accepted: A100 SXM4 80GB, H800 SXM5 80GB)" in english
    assert "ended at 2026-12-10 09:00 CST" in english
    with translation.override("zh-hans"):
        chinese = render_reason(ReasonCode.FAILOVER_NO_CAPACITY, params, tz=SHANGHAI)
    assert chinese.startswith("节点 h100-a 运行失败（最后一次心跳在 2026-12-10 09:00 CST）")
    assert "（本集群或国家枢纽节点内的同型号卡，或您接受的型号：A100 SXM4 80GB, H800 SXM5 80GB）" in chinese
    # none accepted: nothing appended
    with translation.override("zh-hans"):
        alone = render_reason(ReasonCode.FAILOVER_NO_CAPACITY, {**params, "accepted_models": []}, tz=SHANGHAI)
    assert "（本集群或国家枢纽节点内的同型号卡）" in alone


def test_where_the_cards_moved_and_a_node_status_are_words_of_the_reader():
    moved = {"node": "h100-a", "at": AT, "cards": 8, "target_model": "H100 SXM5 80GB", "target_site": "Gui'an", "target_cluster": "ib-a"}
    assert "8 cards were moved to H100 SXM5 80GB in Gui'an / ib-a." in render_reason(ReasonCode.FAILOVER_MOVED, moved, tz=SHANGHAI)
    with translation.override("zh-hans"):
        assert "8 张卡已迁移到 Gui'an / ib-a 的 H100 SXM5 80GB。" in render_reason(ReasonCode.FAILOVER_MOVED, moved, tz=SHANGHAI)
    # an event stored before these were data keeps its stored text
    old = {"node": "h100-a", "at": AT, "cards": 8, "target": "H100 in Gui'an / ib-a"}
    assert "moved to H100 in Gui'an / ib-a." in render_reason(ReasonCode.FAILOVER_MOVED, old, tz=SHANGHAI)
    lost = {"cards": 4, "node": "h100-b", "node_status": "offline", "at": AT}
    assert "whose status became offline at 2026-12-10 09:00 CST" in render_reason(ReasonCode.CAPACITY_LOST, lost, tz=SHANGHAI)


def test_a_booking_reason_formats_money_by_format_money_in_chinese():
    params = {"cards": 8, "price": money_param(2500, "CNY")}
    with translation.override("zh-hans"):
        assert render_reason(ReasonCode.BOOKED, params) == "已预订 8 张卡，每卡时 ¥25.00。"
