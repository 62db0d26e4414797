"""What the system stored in English about a node (status change reasons, reliability details, the
mismatch flag) is shown in the reader's language; what a person typed stays as typed."""

import pytest
from django.test import Client
from django.utils import translation

from inventory.agent_services import mismatch_reason_display, node_mismatch_check
from inventory.display import node_reason_display
from inventory.models import Node
from tests.factories import NodeFactory, member

ZH = "zh-hans"


@pytest.mark.parametrize(("stored", "english", "chinese"), [
    ("cluster retired", "cluster retired", "集群已退役"),
    ("no agent heartbeat for more than 180 seconds", "no agent heartbeat for more than 180 seconds",
     "超过 180 秒没有节点代理心跳"),
    ("silent for more than 90 seconds", "no agent heartbeat for more than 90 seconds", "超过 90 秒没有节点代理心跳"),
    ("marked failed by an operator: PSU smoke", "marked failed by an operator: PSU smoke", "运营人员将其标记为故障：PSU smoke"),
    ("2 reservation(s) in service moved or ended (cluster retired)", "2 reservation(s) in service moved or ended (cluster retired)",
     "2 个服务中的预订已迁移或结束（集群已退役）"),
    ("sshd did not start: exit 1", "sshd did not start: exit 1", "sshd did not start: exit 1"),  # the agent's own words
])
def test_a_stored_reason_reads_in_the_readers_language(stored, english, chinese):
    with translation.override("en"):
        assert node_reason_display(stored) == english
    with translation.override(ZH):
        assert node_reason_display(stored) == chinese


@pytest.mark.django_db
def test_a_flagged_node_is_explained_in_the_readers_language_and_stored_in_english(catalog):
    node = NodeFactory(card_count=8)
    Node.objects.filter(pk=node.pk).update(reported_model_name=node.accelerator_model.name, reported_card_count=7)
    with translation.override(ZH):  # a request in Chinese causes the check: the flag is still stored in English
        node = node_mismatch_check(node=node)
    assert node.mismatch_reason == "agent sees 7 cards, listing says 8"
    with translation.override(ZH):
        assert mismatch_reason_display(node) == "节点代理看到 7 张卡，上架信息写的是 8 张"
    owner = member(organization=node.cluster.site.owner)
    client = Client()
    client.force_login(owner)
    page = client.get(f"/provider/nodes/{node.pk}/", HTTP_ACCEPT_LANGUAGE=ZH).content.decode()
    assert "节点代理看到 7 张卡" in page and "agent sees" not in page
