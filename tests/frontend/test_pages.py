import pytest


@pytest.mark.django_db
def test_the_catalog_page_shows_ecu_and_not_rated_cards(client):
    response = client.get("/catalog/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "H100 SXM5 80GB" in body and "0.9890" in body
    assert "not rated" in body  # Ascend 910B1 publishes no dense figure


@pytest.mark.django_db
def test_the_catalog_filters_by_vendor(client):
    body = client.get("/catalog/?vendor=Cambricon").content.decode()
    assert "MLU370-X8" in body and "H100 SXM5" not in body


@pytest.mark.django_db
def test_the_landing_page_renders_for_anonymous_visitors_with_an_empty_network(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "No capacity is listed yet." in response.content.decode()


@pytest.mark.django_db
def test_a_garbage_catalog_filter_shows_the_whole_catalog(client):
    response = client.get("/catalog/?vendor=%00")
    assert response.status_code == 200
    assert "H100 SXM5 80GB" in response.content.decode()
