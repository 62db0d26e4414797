"""Launch templates: the buyer picks a workload, the template picks the image for the offer's software stack,
and hardware that cannot run it is excluded from quotes (with its own reason) and refused at booking."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from inventory.models import AcceleratorModel, SoftwareStack
from marketplace.launch import DEFAULT_LAUNCH_TEMPLATE, launch_template_get, launch_template_image
from marketplace.models import LaunchTemplate, LaunchTemplateImage, Reservation
from marketplace.selectors import Exclusion, offer_search, quote_build
from marketplace.services import reservation_create
from nodeagent.containers import UnsupportedStack, Workload, _device_flags
from tests.factories import ClusterFactory, NodeFactory, OfferFactory, UserFactory, staff_group

pytestmark = pytest.mark.django_db


def offer_on(stack: str):
    """An active 8-card offer of the first catalog model running `stack`."""
    model = AcceleratorModel.objects.filter(stack=stack).order_by("slug").first()
    assert model is not None, f"the catalog has no {stack} model"
    cluster = ClusterFactory()
    NodeFactory(cluster=cluster, accelerator_model=model)
    return OfferFactory(cluster=cluster, accelerator_model=model)


def image_of(slug: str, stack: str) -> str:
    return LaunchTemplateImage.objects.get(template__slug=slug, stack=stack).image


def book(offer, user, start, **kwargs):
    return reservation_create(organization=user.memberships.get().organization, created_by=user, offer=offer,
                              card_count=2, start=start, end=start + timedelta(hours=4), **kwargs)


def booking_body(offer, start, **extra):
    return {"offer": offer.pk, "card_count": 2, "start": start.isoformat(), "end": (start + timedelta(hours=4)).isoformat(),
            **extra}


# --- the catalog the data migration loads ----------------------------------------------------------


def _agent_can_map(stack: str) -> bool:
    try:
        _device_flags(Workload(reservation_id=1, stack=stack, device_indices=(0,), image="x"))
    except UnsupportedStack:
        return False
    return True


def test_bare_ssh_has_an_image_for_exactly_the_stacks_the_node_agent_can_map(catalog):
    # given the templates the migration loaded
    template = launch_template_get(slug=DEFAULT_LAUNCH_TEMPLATE)
    # then every stack the node agent can put into a container has a shell image, and no other stack has one
    for stack in SoftwareStack.values:
        assert (launch_template_image(template=template, stack=stack) is not None) == _agent_can_map(stack), stack


def test_the_workload_templates_map_to_the_vendor_images_and_leave_unknown_stacks_without_one(catalog):
    pytorch = launch_template_get(slug="pytorch-2")
    vllm = launch_template_get(slug="vllm")
    assert {"cuda", "rocm", "cann", "dtk"} <= {image.stack for image in pytorch.images.all()}
    assert launch_template_image(template=vllm, stack="cann").image.startswith("quay.io/ascend/vllm-ascend:")
    # no public vLLM image is known for Hygon DCU or MetaX: those stacks stay without one
    assert launch_template_image(template=vllm, stack="dtk") is None
    assert launch_template_image(template=vllm, stack="maca") is None


# --- quotes and search ----------------------------------------------------------------------------


def test_a_quote_for_a_workload_excludes_hardware_without_its_image_with_its_own_reason(catalog, soon):
    # given a CUDA offer and a Hygon DCU (DTK) offer
    cuda, dtk = offer_on("cuda"), offer_on("dtk")
    window = {"start": soon, "end": soon + timedelta(hours=24), "cards": 2}
    # when the buyer asks for vLLM
    quote = quote_build(**window, launch_template=launch_template_get(slug="vllm"))
    # then the CUDA offer is placed and the DTK offer excluded for the missing image, naming the stack
    assert [p.offer.offer_id for p in quote.placements] == [cuda.pk]
    [excluded] = quote.excluded
    assert excluded.offer.offer_id == dtk.pk
    [reason] = excluded.reasons
    assert reason.code == Exclusion.NO_IMAGE_FOR_TEMPLATE and "DTK (Hygon)" in reason.message and "vLLM" in reason.message
    assert reason.label == Exclusion.LABELS[Exclusion.NO_IMAGE_FOR_TEMPLATE]
    # and without a workload both are placements (the default, bare SSH, runs on both)
    assert {p.offer.offer_id for p in quote_build(**window).placements} == {cuda.pk, dtk.pk}


def test_a_quote_without_a_workload_excludes_hardware_the_default_workload_cannot_run(catalog, soon):
    # given a CUDA offer and a Biren offer (no container mapping, so no bare-SSH image)
    cuda, biren = offer_on("cuda"), offer_on("birensupa")
    # when the buyer asks for no workload in particular
    quote = quote_build(start=soon, end=soon + timedelta(hours=24), cards=2)
    # then only what booking (with its default workload) accepts gets a Book button
    assert [p.offer.offer_id for p in quote.placements] == [cuda.pk]
    [excluded] = quote.excluded
    assert excluded.offer.offer_id == biren.pk
    assert [reason.code for reason in excluded.reasons] == [Exclusion.NO_IMAGE_FOR_TEMPLATE]


def test_the_quote_api_takes_a_template_and_refuses_an_unknown_one(buyer_client, catalog, soon):
    cuda, dtk = offer_on("cuda"), offer_on("dtk")
    body = {"cards": 2, "start": soon.isoformat(), "duration_hours": 24}
    answer = buyer_client.post("/api/quotes/", {**body, "launch_template": "vllm"}, format="json")
    assert answer.status_code == 200, answer.json()
    data = answer.json()
    assert data["launch_template"] == "vllm"
    assert [(p["offer"]["id"], p["image"]) for p in data["placements"]] == [(cuda.pk, image_of("vllm", "cuda"))]
    assert [(e["offer"]["id"], [r["code"] for r in e["reasons"]]) for e in data["excluded"]] == [
        (dtk.pk, [Exclusion.NO_IMAGE_FOR_TEMPLATE])]
    unknown = buyer_client.post("/api/quotes/", {**body, "launch_template": "cobol-batch"}, format="json")
    assert unknown.status_code == 400 and "launch_template" in unknown.json()["error"]["fields"]


def test_search_can_be_narrowed_to_hardware_that_runs_a_workload(buyer_client, catalog):
    cuda, dtk = offer_on("cuda"), offer_on("dtk")
    assert [row.offer_id for row in offer_search(launch_template=launch_template_get(slug="vllm"))] == [cuda.pk]
    ids = {row["id"] for row in buyer_client.get("/api/market/offers/", {"launch_template": "vllm"}).json()["results"]}
    assert ids == {cuda.pk}
    everything = {row["id"] for row in buyer_client.get("/api/market/offers/").json()["results"]}
    assert {cuda.pk, dtk.pk} <= everything


# --- booking --------------------------------------------------------------------------------------


def test_a_booking_without_a_template_runs_bare_ssh(catalog, buyer, soon):
    reservation, created = book(offer_on("cuda"), buyer, soon)
    assert created and reservation.launch_template.slug == DEFAULT_LAUNCH_TEMPLATE
    assert reservation.launch_image.image == image_of(DEFAULT_LAUNCH_TEMPLATE, "cuda")


def test_booking_a_workload_the_stack_has_no_image_for_is_a_field_error_and_writes_nothing(catalog, buyer, soon):
    dtk = offer_on("dtk")
    with pytest.raises(ValidationError) as error:
        book(dtk, buyer, soon, launch_template="vllm")
    assert set(error.value.message_dict) == {"launch_template"}
    assert "DTK (Hygon)" in error.value.message_dict["launch_template"][0]
    assert not Reservation.objects.exists()
    # the same offer runs PyTorch
    reservation, _ = book(dtk, buyer, soon, launch_template="pytorch-2")
    assert reservation.launch_image.image == image_of("pytorch-2", "dtk")


def test_an_inactive_template_cannot_be_booked(catalog, buyer, soon):
    LaunchTemplate.objects.filter(slug="vllm").update(is_active=False)
    with pytest.raises(ValidationError) as error:
        book(offer_on("cuda"), buyer, soon, launch_template="vllm")
    assert "launch_template" in error.value.message_dict


def test_the_booking_api_defaults_to_bare_ssh_and_answers_a_missing_image_with_400(buyer_client, catalog, soon):
    cuda, dtk = offer_on("cuda"), offer_on("dtk")
    # given no template named, when booked, then it runs bare SSH and says which image
    created = buyer_client.post("/api/reservations/", booking_body(cuda, soon), format="json")
    assert created.status_code == 201, created.json()
    assert (created.json()["launch_template"], created.json()["image"]) == (
        DEFAULT_LAUNCH_TEMPLATE, image_of(DEFAULT_LAUNCH_TEMPLATE, "cuda"))
    # given vLLM on DTK hardware, then 400 on launch_template in the one error shape, and nothing booked
    refused = buyer_client.post("/api/reservations/", booking_body(dtk, soon, launch_template="vllm"), format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid" and list(refused.json()["error"]["fields"]) == ["launch_template"]
    unknown = buyer_client.post("/api/reservations/", booking_body(cuda, soon, launch_template="nope"), format="json")
    assert unknown.status_code == 400 and "launch_template" in unknown.json()["error"]["fields"]
    assert Reservation.objects.count() == 1
    # and the list shows the template of each reservation
    listed = buyer_client.get("/api/reservations/").json()["results"]
    assert [row["launch_template"] for row in listed] == [DEFAULT_LAUNCH_TEMPLATE]


def test_reusing_an_idempotency_key_for_another_workload_is_refused(buyer_client, catalog, soon):
    cuda = offer_on("cuda")
    first = buyer_client.post("/api/reservations/", booking_body(cuda, soon), format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 201
    other = buyer_client.post("/api/reservations/", booking_body(cuda, soon, launch_template="vllm"), format="json",
                              HTTP_IDEMPOTENCY_KEY="k")
    assert other.status_code == 422


# --- the catalog API and the admin ----------------------------------------------------------------


def test_signed_in_users_list_the_active_templates_with_their_images(catalog):
    LaunchTemplate.objects.filter(slug="vllm").update(is_active=False)
    client = APIClient()
    assert client.get("/api/launch-templates/").status_code in (401, 403)
    client.force_login(UserFactory())  # no organization needed: it is a catalog
    body = client.get("/api/launch-templates/").json()
    slugs = [row["slug"] for row in body]
    assert DEFAULT_LAUNCH_TEMPLATE in slugs and "pytorch-2" in slugs and "vllm" not in slugs
    pytorch = next(row for row in body if row["slug"] == "pytorch-2")
    assert {(i["stack"], i["image"]) for i in pytorch["images"]} == set(
        LaunchTemplateImage.objects.filter(template__slug="pytorch-2").values_list("stack", "image"))


def test_an_operator_edits_an_image_in_the_admin_and_other_staff_cannot(client, catalog):
    image = LaunchTemplateImage.objects.get(template__slug="vllm", stack="cuda")
    url = f"/admin/marketplace/launchtemplate/{image.template_id}/change/"
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code in (403, 302)
    operator = UserFactory(is_staff=True)
    operator.groups.add(staff_group("operator"))
    client.force_login(operator)
    page = client.get(url)
    assert page.status_code == 200 and image.image in page.content.decode()


# --- pages ----------------------------------------------------------------------------------------


def test_the_quote_page_offers_the_workloads_and_shows_why_hardware_cannot_run_one(client, catalog, buyer, soon):
    cuda, dtk = offer_on("cuda"), offer_on("dtk")
    client.force_login(buyer)
    blank = client.get("/market/quote/").content.decode()
    assert 'name="launch_template"' in blank and 'value="vllm"' in blank
    page = client.get("/market/quote/", {"cards": 2, "start": soon.strftime("%Y-%m-%dT%H:%M"), "duration_hours": 4,
                                         "currency": "CNY", "launch_template": "vllm"})
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-offer="{dtk.pk}"' in html and f'data-reason="{Exclusion.NO_IMAGE_FOR_TEMPLATE}"' in html
    # the Book button of the placement books the asked workload
    assert '<input type="hidden" name="launch_template" value="vllm">' in html
    assert f'action="/market/offers/{cuda.pk}/"' in html


def test_the_book_form_picks_a_workload_and_the_reservation_page_shows_its_image(client, catalog, buyer, soon):
    dtk = offer_on("dtk")
    client.force_login(buyer)
    form_page = client.get(f"/market/offers/{dtk.pk}/").content.decode()
    assert 'name="launch_template"' in form_page and f'<option value="{DEFAULT_LAUNCH_TEMPLATE}" selected>' in form_page
    form = {"card_count": 2, "start": soon.strftime("%Y-%m-%dT%H:%M"),
            "end": (soon + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M"), "idempotency_key": "t-1"}
    # given a workload this hardware has no image for, then the form says so and nothing is booked
    refused = client.post(f"/market/offers/{dtk.pk}/", {**form, "launch_template": "vllm"})
    assert refused.status_code == 400 and "has no image for the DTK (Hygon) software stack" in refused.content.decode()
    assert not Reservation.objects.exists()
    # given PyTorch, then it books and the reservation page names the workload and the image that will run
    booked = client.post(f"/market/offers/{dtk.pk}/", {**form, "launch_template": "pytorch-2", "idempotency_key": "t-2"})
    assert booked.status_code == 302
    detail = client.get(booked["Location"]).content.decode()
    assert "PyTorch 2.x" in detail and image_of("pytorch-2", "dtk") in detail
