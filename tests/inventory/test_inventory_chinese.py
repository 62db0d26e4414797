"""The provider's pages, the landing page, the catalog, the import report and the inventory API in
Simplified Chinese: headings, statuses, hub and province names in Chinese; codes stay English.

The English pages are covered by the other tests (the test client sends no Accept-Language)."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template import Context, Template
from django.utils import translation

from accounts.models import Job
from inventory.models import Node
from inventory.services import nodes_import_job_run
from tests.factories import province
from tests.inventory.test_node_import import HEADER

pytestmark = pytest.mark.django_db

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.fixture
def signed_in(client, provider):
    client.force_login(provider.user)
    return client


def text_of(response) -> str:
    """The visible text, tags dropped, so a test reads what a person reads."""
    assert response.status_code == 200, response.status_code
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_the_provider_home_in_chinese_shows_chinese_headings_province_hub_and_lifecycle(signed_in, provider):
    # Given a provider whose site is online in Guizhou (the Guizhou national hub)
    assert provider.site.province == province("CN-GZ")
    # When the page is asked for in Chinese
    page = text_of(signed_in.get("/provider/", **ZH))
    # Then the heading, the province, its hub and the lifecycle are Chinese
    assert "Alpha 的站点" in page and "新建站点" in page
    assert "贵州" in page and "贵州国家枢纽节点" in page
    assert "在线" in page and "Online" not in page
    assert "Guizhou" not in page
    # and the same page without Accept-Language stays English
    english = text_of(signed_in.get("/provider/"))
    assert "Sites of Alpha" in english and "Guizhou hub" in english


def test_the_site_page_in_chinese_names_the_hub_cluster_and_translates_node_statuses(signed_in, provider):
    page = text_of(signed_in.get(f"/provider/sites/{provider.site.pk}/", **ZH))
    assert "国家枢纽节点" in page and "贵安集群" in page
    assert "按型号和状态统计的卡数" in page
    for status in ("已注册", "在线", "维护", "异常", "离线", "已退役"):
        assert status in page, status
    assert "Gui'an" not in page.replace("Gui&#x27;an", "")  # the city is data; the hub cluster is translated
    assert "Utilization" not in page and "利用率" in page


def test_the_cluster_node_import_and_maintenance_pages_render_in_chinese(signed_in, provider):
    cluster = text_of(signed_in.get(f"/provider/clusters/{provider.cluster.pk}/", **ZH))
    assert "集群 c1" in cluster and "报价单" in cluster and "每卡时" in cluster
    with translation.override("zh-hans"):
        status = provider.node.get_status_display()
    assert status in ("已注册", "在线") and status in cluster
    assert "1 个节点" in cluster

    node = text_of(signed_in.get(f"/provider/nodes/{provider.node.pk}/", **ZH))
    assert "可靠性：" in node and "代理密钥" in node and "状态历史" in node

    imports = text_of(signed_in.get("/provider/nodes/import/", **ZH))
    assert "从 CSV 导入节点" in imports and "下载模板" in imports and "CSV 文件" in imports

    maintenance = text_of(signed_in.get(f"/provider/clusters/{provider.cluster.pk}/maintenance/", **ZH))
    assert "安排维护窗口" in maintenance and "整个集群" in maintenance


def test_a_form_error_of_a_service_is_chinese_next_to_its_field(signed_in, provider):
    response = signed_in.post("/provider/sites/new/", {"name": provider.site.name, "country": "CN", "lifecycle": "planned"}, **ZH)
    assert '<p class="field-error" data-field="name">您已有同名的站点。</p>' in response.content.decode()


def test_the_landing_page_and_the_catalog_render_in_chinese_with_vendor_names(client, catalog):
    home = text_of(client.get("/", **ZH))
    assert "像水电一样流动的算力" in home and "在建与待上线" in home and "各厂商的卡数" in home

    page = text_of(client.get("/catalog/", **ZH))
    assert "加速卡目录" in page and "未评级" in page
    assert "华为" in page and "寒武纪" in page and "海光" in page and "沐曦" in page
    assert "NVIDIA" in page  # not translated
    # the filter still takes the catalog's vendor key
    only = client.get("/catalog/?vendor=Huawei (HiSilicon)", **ZH).content.decode()
    assert 'value="Huawei (HiSilicon)" selected>华为</option>' in only


def test_local_name_falls_back_to_english_without_a_chinese_name():
    guizhou = province("CN-GZ")
    template = Template('{% load localnames %}{{ p|local_name }}|{{ p.hub|local_name }}|{{ p|local_name:"hub_cluster" }}|{{ none|local_name }}')
    with translation.override("zh-hans"):
        assert template.render(Context({"p": guizhou})) == "贵州|贵州|贵安集群|"
        guizhou.name_zh = ""
        assert template.render(Context({"p": guizhou})).startswith("Guizhou|")
    with translation.override("en"):
        assert template.render(Context({"p": province("CN-GZ")})) == "Guizhou|Guizhou|Gui&#x27;an|"


def test_a_bad_import_row_gives_a_chinese_error_to_a_chinese_provider(signed_in, provider):
    # Given a file whose second node names a model the catalog does not know
    data = (f"{HEADER}\ngpu-0001,{provider.cluster.pk},nvidia-h100-sxm5-80gb,8,128,2048,15360,x\n"
            f"gpu-0002,{provider.cluster.pk},no-such-card,8,128,2048,15360,x\n").encode()
    # When a provider reading Chinese uploads it
    response = signed_in.post("/provider/nodes/import/", {"file": SimpleUploadedFile("nodes.csv", data)}, **ZH)
    job_id = int(re.fullmatch(r"/jobs/(\d+)/", response["Location"]).group(1))
    # and the worker (whose own language is English) runs the job
    with translation.override("en"):
        assert nodes_import_job_run(job_id=job_id) == Job.Status.FAILED
    # Then the row's error and the job's summary are in the uploader's language
    job = Job.objects.get(pk=job_id)
    assert job.result["row_errors"] == [{
        "row": 3, "column": "accelerator_model", "message": "未知的加速卡型号“no-such-card”（请使用目录中的名称或标识）",
    }]
    assert job.message.startswith("1 行有误；未导入任何内容。")
    assert not Node.objects.filter(hostname="gpu-0001").exists()


def test_a_bad_file_is_refused_in_chinese_on_the_import_page(signed_in):
    data = b"hostname,cluster\nx,1\n"
    response = signed_in.post("/provider/nodes/import/", {"file": SimpleUploadedFile("nodes.csv", data)}, **ZH)
    assert response.status_code == 400
    assert "缺少列：accelerator_model" in response.content.decode()


def test_an_api_validation_error_has_a_chinese_message_and_the_same_code(provider, api):
    payload = {"site": provider.site.pk, "name": "c1", "fabric": "roce", "fabric_bandwidth_gbps": 100}
    english = api.post("/api/clusters/", payload, format="json").json()["error"]
    chinese = api.post("/api/clusters/", payload, format="json", **ZH).json()["error"]
    assert chinese["code"] == english["code"]
    assert english["fields"] == {"name": ["This site already has a cluster with this name."]}
    assert chinese["fields"] == {"name": ["此站点已有同名的集群。"]}
    assert "此站点已有同名的集群。" in chinese["message"]


def test_an_api_state_refusal_is_chinese_and_names_the_states_as_the_api_does(provider, api):
    response = api.patch(f"/api/sites/{provider.site.pk}/", {"lifecycle": "planned"}, format="json", **ZH)
    error = response.json()["error"]
    assert response.status_code == 400
    assert error["fields"]["lifecycle"] == ["站点的生命周期不能从 online 变为 planned。"]
