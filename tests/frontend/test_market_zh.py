"""The buyer's, the operators' and the dashboard pages, and the market API's errors, in Chinese: a browser
asking for zh-Hans gets Chinese headings, status labels, chart labels and national hub names; the API keeps
its machine-readable codes and translates only the human message. English stays the default."""

import json
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from inventory.management.demo_network import DEMO_LOGINS
from inventory.models import Node, NodeStatusChange
from marketplace.models import Reservation
from marketplace.services import reservation_create
from tests.factories import ClusterFactory, OfferFactory, UserFactory, staff_group
from tests.provisioning import hand_over

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.fixture
def buyer_page(buyer):
    client = Client()
    client.force_login(buyer)
    return client


def _book(offer, buyer, start, cards=8):
    reservation, _created = reservation_create(
        organization=buyer.memberships.get().organization, created_by=buyer, offer=offer, card_count=cards,
        start=start, end=start + timedelta(hours=4),
    )
    return reservation


def _h1(body: str) -> str:
    return re.sub(r"<[^>]+>", "", re.search(r"<h1>(.*?)</h1>", body, re.S).group(1)).strip()


def test_search_page_in_chinese_with_hub_and_province_names_from_the_catalog(client, small_offer):
    body = client.get("/market/", **ZH).content.decode()
    assert '<html lang="zh-hans"' in body
    assert _h1(body) == "查找加速卡算力"
    for header in ("加速卡", "所有者 · 站点", "地区", "空闲卡数", "每卡时", "每 ECU时"):
        assert f"<th>{header}</th>" in body or f'<th class="num">{header}</th>' in body, header
    # the region cell: the province and its national hub by their Chinese names (regions.csv's name_zh)
    province = small_offer.cluster.site.province
    assert province.name_zh and province.name_zh in body and f"{province.hub.name_zh}国家枢纽节点" in body
    assert f">{province.name}<" not in body
    # form labels and the sort choices too
    assert "每卡最小显存（GB）" in body and "每 ECU时价格（从低到高）" in body
    # and in English (no Accept-Language) the same page is English
    english = client.get("/market/").content.decode()
    assert _h1(english) == "Find accelerator capacity" and f"{province.hub.name} hub" in english


def test_search_errors_and_an_empty_result_in_chinese(client, small_offer):
    bad = client.get("/market/", {"page_size": "0"}, **ZH)
    assert bad.status_code == 400 and "page_size：必须是 1 到" in bad.content.decode()
    none = client.get("/market/", {"min_free_cards": "17"}, **ZH).content.decode()
    assert "接下来一小时内没有符合条件的报价单。" in none and "去掉“最少空闲卡数：17”" in none


def test_quote_page_in_chinese_says_why_each_offer_is_excluded(client, small_offer, soon):
    OfferFactory(cluster=ClusterFactory(), currency="USD")  # excluded: another currency
    query = {"cards": 8, "start": soon.strftime("%Y-%m-%dT%H:%M"), "duration_hours": 24, "currency": "CNY"}
    body = client.get("/market/quote/", query, **ZH).content.decode()
    assert _h1(body) == "您的任务需要什么？"
    assert "可行方案" in body and "被排除的报价单（1）" in body
    assert "以其他币种定价：" in body and "以 USD 定价；本次询价使用 CNY（币种从不自动换算）。" in body
    # the reason's code stays machine-readable
    assert 'data-reason="different_currency"' in body


def test_quote_form_errors_in_chinese(client, small_offer, soon):
    response = client.get("/market/quote/", {"start": soon.strftime("%Y-%m-%dT%H:%M"), "duration_hours": 24, "currency": "CNY"}, **ZH)
    assert response.status_code == 400
    assert "请填写卡数或总 ECU（二选一）。" in response.content.decode()


def test_offer_and_booking_pages_in_chinese(buyer_page, small_offer, soon):
    body = buyer_page.get(f"/market/offers/{small_offer.pk}/", **ZH).content.decode()
    assert "预订卡" in body and "每卡时" in body and ">预订</button>" in body
    # too many cards: the conflict in Chinese, on the card count
    window = {"start": soon.strftime("%Y-%m-%dT%H:%M"), "end": (soon + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M")}
    page = buyer_page.post(f"/market/offers/{small_offer.pk}/", {**window, "card_count": 17, "idempotency_key": "zh"}, **ZH)
    assert page.status_code == 409
    assert page.context["form"].errors["card_count"] == [
        "您要的 17 张卡在该时间窗口内只有 16 张空闲，请预订 16 张或更少，或选择其他时间或其他报价单。"]


def test_reservation_pages_in_chinese_with_translated_statuses(buyer_page, buyer, small_offer, soon):
    requested = _book(small_offer, buyer, soon + timedelta(hours=10))
    active = hand_over(_book(small_offer, buyer, soon, cards=4), at=soon + timedelta(minutes=5))
    assert active.status == Reservation.Status.ACTIVE
    listing = buyer_page.get("/market/reservations/", **ZH).content.decode()
    assert _h1(listing).endswith("的预订")
    assert "<th>状态</th>" in listing and ">已请求</span>" in listing and ">运行中</span>" in listing
    assert ">requested<" not in listing and ">Requested<" not in listing
    detail = buyer_page.get(f"/market/reservations/{requested.pk}/?booked=1", **ZH).content.decode()
    assert _h1(detail) == f"预订 {requested.pk} 已请求"
    assert "预订成功。" in detail and "锁定价格" in detail and "时间线" in detail
    # the timeline's reason: the lazy template translated, money formatted by format_money
    assert "已预订 8 张卡，每卡时 ¥25.00。" in detail
    connect = buyer_page.get(f"/market/reservations/{active.pk}/", **ZH).content.decode()
    assert ">运行中</span>" in connect


def test_a_reservation_action_error_and_success_message_in_chinese(buyer_page, buyer, small_offer, soon):
    reservation = _book(small_offer, buyer, soon)
    release = buyer_page.post(f"/market/reservations/{reservation.pk}/release/", **ZH)
    assert release.status_code == 409
    assert "此预订尚未开始：请改为取消（无需付费）。" in release.content.decode()
    cancel = buyer_page.post(f"/market/reservations/{reservation.pk}/cancel/", follow=True, **ZH)
    assert "预订已取消，无需付费。" in cancel.content.decode()
    assert ">已取消</span>" in cancel.content.decode()


def test_operator_page_in_chinese(small_offer, buyer, soon):
    operator = UserFactory()
    operator.groups.add(staff_group("operator"))
    reservation = hand_over(_book(small_offer, buyer, soon), at=soon + timedelta(minutes=5))
    node = Node.objects.filter(cluster=small_offer.cluster).order_by("pk").first()
    client = Client()
    client.force_login(operator)
    body = client.get("/operator/", **ZH).content.decode()
    assert _h1(body) == "运维"
    assert "当前正在服务预订的在线节点" in body and "将节点标记为故障" in body
    response = client.post("/operator/nodes/fail/", {"node": node.pk, "cause": "host_fault", "reason": "PSU", "confirm": "on"},
                           follow=True, **ZH)
    assert NodeStatusChange.objects.filter(node=node, to_status="unhealthy").exists()
    assert f"{node.hostname} 已标记为故障；其上的预订正在迁移到其他卡。" in response.content.decode()
    assert Reservation.objects.get(pk=reservation.pk).status in (Reservation.Status.ACTIVE, Reservation.Status.MIGRATING)


@pytest.fixture
def demo_network(catalog):
    call_command("seed_demo", "--seed", "42", "--cards", "400", "--no-progress", stdout=StringIO(), stderr=StringIO())
    call_command("seed_demo_market", stdout=StringIO())


def _chart(body: str, chart_id: str) -> dict:
    return json.loads(re.search(rf'<script id="{chart_id}" type="application/json">(.*?)</script>', body, re.S).group(1))


def test_dashboards_in_chinese_with_chart_labels_and_hub_names_translated(demo_network):
    client = Client()
    client.force_login(User.objects.get(email=DEMO_LOGINS["operator"]))
    network = client.get("/network/", **ZH).content.decode()
    assert _h1(network) == "网络仪表盘"
    assert "8 个国家枢纽节点" in network and "按国家枢纽节点" in network and "需求侧枢纽（东部）" in network
    history = _chart(network, "network-history")
    assert history["data"]["datasets"][0]["label"] == "上架"
    by_hub = _chart(network, "network-by-hub")
    assert "京津冀" in by_hub["data"]["labels"] and "Beijing-Tianjin-Hebei" not in by_hub["data"]["labels"]
    # the page fragment is cached per language: English right after Chinese is still English
    english = client.get("/network/").content.decode()
    assert _h1(english) == "Network dashboard" and "By national hub" in english
    assert "Beijing-Tianjin-Hebei" in _chart(english, "network-by-hub")["data"]["labels"]

    client.force_login(User.objects.get(email=DEMO_LOGINS["buyer"]))
    buyer = client.get("/market/dashboard/", **ZH).content.decode()
    assert _h1(buyer).startswith("仪表盘：")
    assert "运行中的预订及其使用情况" in buyer and "即将开始的预订" in buyer and "最近 30 天的支出" in buyer
    assert "<figcaption>每日支出</figcaption>" in buyer

    client.force_login(User.objects.get(email=DEMO_LOGINS["provider"]))
    provider = client.get("/provider/dashboard/", **ZH).content.decode()
    assert "<h2 id=\"reliability-h\">可靠性</h2>" in provider and "按站点和型号" in provider
    assert _chart(provider, "provider-utilization")["data"]["datasets"][0]["label"] == "利用率 %"


def test_an_idle_rented_card_is_called_out_in_chinese(buyer_page, buyer, small_offer, soon, monkeypatch):
    from marketplace import dashboard

    real = dashboard.buyer_dashboard

    def with_idle(**kwargs):
        return {**real(**kwargs), "idle_cards": 3}

    monkeypatch.setattr(dashboard, "buyer_dashboard", with_idle)
    body = buyer_page.get("/market/dashboard/", **ZH).content.decode()
    assert "3 张已租的卡处于闲置。" in body and "释放不用的卡即可停止为其付费。" in body


def _api(buyer, language=None):
    client = APIClient()
    client.force_login(buyer)
    if language:
        client.credentials(HTTP_ACCEPT_LANGUAGE=language)
    return client


def test_booking_api_errors_keep_their_code_and_translate_the_message(buyer, small_offer, soon):
    body = {"offer": small_offer.pk, "card_count": 17, "start": soon.isoformat(), "end": (soon + timedelta(hours=4)).isoformat()}
    english = _api(buyer).post("/api/reservations/", body, format="json")
    chinese = _api(buyer, "zh-hans").post("/api/reservations/", body, format="json")
    assert english.status_code == chinese.status_code == 409
    assert english.json()["error"]["code"] == chinese.json()["error"]["code"] == "insufficient_capacity"
    assert english.json()["error"]["message"].startswith("Only 16 of the 17 cards are free")
    assert chinese.json()["error"]["message"] == "您要的 17 张卡在该时间窗口内只有 16 张空闲，请预订 16 张或更少，或选择其他时间或其他报价单。"
    # a field error: the field name stays, its message is Chinese
    past = _api(buyer, "zh-hans").post("/api/reservations/", {**body, "card_count": 0}, format="json")
    assert past.status_code == 400 and past.json()["error"]["fields"]["card_count"]
    assert not Reservation.objects.exists()


def test_quote_api_in_chinese_keeps_codes_and_translates_labels_and_messages(buyer, small_offer, soon):
    body = {"cards": 8, "start": soon.isoformat(), "duration_hours": 24, "currency": "CNY", "max_total_price_minor": 100}
    quote = _api(buyer, "zh-hans").post("/api/quotes/", body, format="json").json()
    reason = quote["excluded"][0]["reasons"][0]
    assert reason["code"] == "over_budget" and reason["label"] == "超出预算"
    assert reason["message"] == "该方案总价格为 ¥4,800.00，超出您的预算 ¥1.00。"
    unknown = _api(buyer, "zh-hans").post("/api/quotes/", {**body, "wat": 1}, format="json")
    assert unknown.status_code == 400 and unknown.json()["error"]["fields"]["wat"] == ["未知字段。"]
    english = _api(buyer).post("/api/quotes/", {**body, "wat": 1}, format="json")
    assert english.json()["error"]["fields"]["wat"] == ["Unknown field."]
    assert english.json()["error"]["code"] == unknown.json()["error"]["code"]


def test_local_name_picks_the_chinese_name_on_a_chinese_page_only(small_offer):
    from django.utils import translation

    from inventory.templatetags.localnames import local_name

    hub = small_offer.cluster.site.province.hub
    with translation.override("en"):
        assert hub.name_zh and local_name(hub) == hub.name
    with translation.override("zh-hans"):
        assert local_name(hub) == hub.name_zh
        hub.name_zh = ""
        assert local_name(hub) == hub.name  # no Chinese name in the catalog: the English one
    assert local_name(None) == ""


def test_the_network_dashboard_names_vendors_as_the_catalog_does_in_chinese():
    from django.utils import translation

    from frontend.views.dashboards import _localized

    figures = {"by": [{"key": "vendor", "label": "Vendor", "rows": [{"name": "Huawei (HiSilicon)"}, {"name": "NVIDIA"}]}],
               "hubs": []}
    with translation.override("zh-hans"):
        names = [row["name"] for row in _localized(figures)["by"][0]["rows"]]
    assert names == ["华为", "NVIDIA"]
    with translation.override("en"):
        assert [row["name"] for row in _localized(figures)["by"][0]["rows"]] == ["Huawei (HiSilicon)", "NVIDIA"]
