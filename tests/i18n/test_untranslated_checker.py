"""The untranslated-string finder (tests/i18n/untranslated.py) on pages written by hand."""

from tests.i18n.untranslated import DataValues, page_text, untranslated

NO_DATA = DataValues([])


def test_an_english_word_on_a_chinese_page_is_reported():
    html = '<html lang="zh-hans"><body><h1>搜索算力</h1><p>Book now</p><button title="Cancel">取消</button></body></html>'
    assert untranslated(html, language="zh-hans", data=NO_DATA) == ["Book now", "Cancel"]


def test_names_units_codes_and_data_are_not_reported():
    data = DataValues(["Zhangjiakou North", "buyer@demo.computeflow.cn"])
    html = """<html lang="zh-hans"><body>
      <td>Zhangjiakou North</td><td>16 张 NVIDIA H100 卡</td><td>CNY 1,640.00</td><td>2026-12-10 09:00 CST</td>
      <td>buyer@demo.computeflow.cn</td><td>/market/reservations/12/</td><td>Asia/Shanghai</td>
      <code>ssh -p 2201 root@10.0.0.1</code><span translate="no">Helinger</span>
      <option lang="en">English</option><script>const label = "Busy";</script></body></html>"""
    assert untranslated(html, language="zh-hans", data=data) == []


def test_a_data_value_leaves_no_fragment_behind():
    # "Zhangjiakou North DC" is one site's name: removing "Zhangjiakou North" first would leave "DC"
    data = DataValues(["Zhangjiakou North", "Zhangjiakou North DC"])
    assert untranslated("<p>站点 Zhangjiakou North DC</p>", language="zh-hans", data=data) == []


def test_chinese_on_an_english_page_is_reported_unless_it_is_data_or_marked():
    data = DataValues(["张家口集群"])
    html = """<html lang="en"><body><h1>搜索</h1><p>Hub cluster: 张家口集群</p>
      <option lang="zh-hans">简体中文</option><input type="submit" value="预订"></body></html>"""
    assert untranslated(html, language="en", data=data) == ["搜索", "预订"]


def test_shown_attributes_are_read_and_hidden_content_is_not():
    html = '<p><img alt="Usage chart"><input placeholder="Search"><span hidden>Loading</span><b aria-label="Close">×</b></p>'
    assert page_text(html).texts == ["Usage chart", "Search", "Close", "×"]
    assert untranslated(html, language="zh-hans", data=NO_DATA) == ["Usage chart", "Search", "Close"]
