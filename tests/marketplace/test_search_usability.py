"""Search usability: vendor and model come from the catalog (select boxes on the page, case-insensitive
text in the API: "Huawei" finds "Huawei (HiSilicon)"), and an empty result says what to try."""

import re
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from inventory.selectors import vendor_names_for
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, accelerator

pytestmark = pytest.mark.django_db

SEARCH = "/api/market/offers/"
ASCEND = "huawei-ascend-910b-generic-atlas-800t-a2"


@pytest.fixture
def h100_and_ascend(small_offer):
    ascend = accelerator(ASCEND)
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster, accelerator_model=ascend)
    return small_offer, OfferFactory(cluster=cluster, accelerator_model=ascend, price_per_card_hour_minor=900)


@pytest.mark.parametrize(("typed", "vendors"), [
    ("Huawei", ["Huawei (HiSilicon)"]),
    ("huawei", ["Huawei (HiSilicon)"]),
    ("HUAWEI (hisilicon)", ["Huawei (HiSilicon)"]),
    ("HiSilicon", ["Huawei (HiSilicon)"]),
    ("nvidia", ["NVIDIA"]),
    ("  Iluvatar  ", ["Iluvatar CoreX"]),
    ("Baidu", ["Kunlunxin (Baidu)"]),
    ("Hua", []),  # never a fragment of a word
    ("", []),
])
def test_the_vendor_rule_is_case_insensitive_and_takes_the_name_its_parts_or_leading_words(catalog, typed, vendors):
    assert vendor_names_for(typed) == vendors


def test_the_api_finds_huawei_by_its_short_name_in_any_case(buyer_client, h100_and_ascend):
    h100, ascend = h100_and_ascend
    for typed in ("Huawei", "huawei", "Huawei (HiSilicon)"):
        assert [o["id"] for o in buyer_client.get(SEARCH, {"vendor": typed}).json()["results"]] == [ascend.pk]


@pytest.mark.parametrize("typed", ["nvidia-h100-sxm5-80gb", "NVIDIA-H100-SXM5-80GB", "H100 SXM5 80GB", "h100 sxm5 80gb"])
def test_the_api_finds_a_model_by_slug_or_name_in_any_case(buyer_client, h100_and_ascend, typed):
    h100, _ = h100_and_ascend
    assert [o["id"] for o in buyer_client.get(SEARCH, {"model": typed}).json()["results"]] == [h100.pk]


def test_an_unknown_vendor_or_model_is_a_400_that_names_the_choices(buyer_client, h100_and_ascend):
    response = buyer_client.get(SEARCH, {"vendor": "Hua", "model": "H999"})
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert "Huawei (HiSilicon)" in fields["vendor"][0] and "NVIDIA" in fields["vendor"][0]
    assert "H999" in fields["model"][0]


def test_the_search_page_offers_vendor_and_model_as_select_boxes_from_the_catalog(client, h100_and_ascend):
    body = client.get("/market/").content.decode()
    vendor = re.search(r'<select name="vendor"[^>]*>(.*?)</select>', body, re.S).group(1)
    model = re.search(r'<select name="model"[^>]*>(.*?)</select>', body, re.S).group(1)
    assert '<option value="Huawei (HiSilicon)">' in vendor and '<option value="NVIDIA">' in vendor
    assert '<optgroup label="NVIDIA">' in model and f'<option value="{ASCEND}">' in model
    # and the choice the buyer made stays selected on the result page
    chosen = client.get("/market/", {"vendor": "Huawei (HiSilicon)", "model": ASCEND}).content.decode()
    assert '<option value="Huawei (HiSilicon)" selected>' in chosen and f'<option value="{ASCEND}" selected>' in chosen


def links_of(block: str) -> dict[str, dict[str, list[str]]]:
    found = re.findall(r'<a href="([^"]*)" data-testid="([^"]+)"', block)
    return {testid: parse_qs(urlsplit(unescape(href)).query) for href, testid in found}


def test_no_results_says_so_and_offers_links_that_drop_each_filter(client, h100_and_ascend, soon):
    # given a search nothing matches: NVIDIA cards with at least 64 free, on a window
    query = {"vendor": "NVIDIA", "min_free_cards": "64", "stack": "cuda",
             "start": f"{soon:%Y-%m-%dT%H:%M}", "end": f"{soon + timedelta(hours=4):%Y-%m-%dT%H:%M}"}
    response = client.get("/market/", query)
    body = response.content.decode()
    assert response.status_code == 200, body
    # then the page says no offer matches and what to try, naming each filter that is set
    assert 'data-testid="offers"' not in body
    block = body.split('data-testid="no-results"')[1].split("</div>")[0]
    assert "No offers match" in block
    assert "Vendor: NVIDIA" in block and "Min free cards: 64" in block and "Software stack: CUDA" in unescape(block)
    links = links_of(block)
    # each link is the same search without that one filter
    assert "vendor" not in links["drop-vendor"] and links["drop-vendor"]["min_free_cards"] == ["64"]
    assert "min_free_cards" not in links["drop-min_free_cards"] and links["drop-min_free_cards"]["vendor"] == ["NVIDIA"]
    assert "start" not in links["drop-window"] and "end" not in links["drop-window"]
    assert "drop-all" in links
    # and following "remove min free cards" finds the H100 offer
    assert 'data-testid="offers"' in client.get("/market/", {k: v[0] for k, v in links["drop-min_free_cards"].items()}).content.decode()


def test_no_results_without_a_window_suggests_a_longer_one(client, catalog):
    # given an offer that rents for at least 8 hours: it cannot fit the default window (the coming hour)
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster)
    OfferFactory(cluster=cluster, min_duration_hours=8)
    body = client.get("/market/").content.decode()
    block = body.split('data-testid="no-results"')[1].split("</div>")[0]
    suggestion = links_of(block)["try-window"]
    # when the buyer follows the suggested window, the offer is there
    found = client.get("/market/", {"start": suggestion["start"][0], "end": suggestion["end"][0]}).content.decode()
    assert 'data-testid="offers"' in found and "No offers match" not in found
