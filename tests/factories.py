"""Factories for tests. Catalog rows come from the shipped catalog (loaded on demand, since
transactional tests flush the tables that the data migrations filled)."""

import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from accounts.models import Membership, Organization, User
from inventory.catalog import load_catalog, load_regions
from inventory.models import AcceleratorModel, Cluster, Device, NationalHub, Node, Offer, Province, Site
from marketplace.launch import load_launch_templates
from marketplace.models import LaunchTemplate

DEFAULT_PASSWORD = "correct-horse-battery-staple"


def catalog_loaded() -> None:
    if not AcceleratorModel.objects.exists():
        load_catalog(accelerator_model_cls=AcceleratorModel)
    if not Province.objects.exists():
        load_regions(national_hub_cls=NationalHub, province_cls=Province)
    # Transactional tests flush the data migrations' rows: offers need the templates to be bookable.
    if not LaunchTemplate.objects.exists():
        load_launch_templates()


def accelerator(slug: str = "nvidia-h100-sxm5-80gb") -> AcceleratorModel:
    catalog_loaded()
    return AcceleratorModel.objects.get(slug=slug)


def province(code: str = "CN-GZ") -> Province:
    catalog_loaded()
    return Province.objects.get(code=code)


def staff_group(name: str) -> Group:
    return Group.objects.get_or_create(name=name)[0]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"organization-{n}")
    kind = Organization.Kind.BUYER


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = Membership.Role.OWNER


def member(*, kind: str = Organization.Kind.BUYER, role: str = Membership.Role.OWNER, organization=None) -> User:
    """A user who is `role` in a (new) organization of `kind`."""
    organization = organization or OrganizationFactory(kind=kind)
    return MembershipFactory(organization=organization, role=role).user


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    owner = factory.SubFactory(OrganizationFactory, kind=Organization.Kind.PROVIDER)
    name = factory.Sequence(lambda n: f"Site {n}")
    country = "CN"
    province = factory.LazyFunction(province)
    city = "Gui'an"
    lifecycle = Site.Lifecycle.ONLINE


class ClusterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cluster

    site = factory.SubFactory(SiteFactory)
    name = factory.Sequence(lambda n: f"cluster-{n}")
    fabric = Cluster.Fabric.INFINIBAND
    fabric_bandwidth_gbps = 400


class NodeFactory(factory.django.DjangoModelFactory):
    """A node with its devices (one per card)."""

    class Meta:
        model = Node
        skip_postgeneration_save = True

    cluster = factory.SubFactory(ClusterFactory)
    hostname = factory.Sequence(lambda n: f"node-{n:04d}")
    accelerator_model = factory.LazyFunction(accelerator)
    card_count = 8
    cpu_cores = 128
    ram_gb = 2048
    disk_gb = 15000
    status = Node.Status.ONLINE
    # As if its agent had registered the listed hardware and just sent a heartbeat.
    reported_model_name = factory.LazyAttribute(lambda node: node.accelerator_model.name if node.status != Node.Status.REGISTERED else "")
    reported_card_count = factory.LazyAttribute(lambda node: node.card_count if node.status != Node.Status.REGISTERED else None)
    last_heartbeat_at = factory.LazyAttribute(lambda node: timezone.now() if node.status != Node.Status.REGISTERED else None)

    @factory.post_generation
    def devices(obj, create, extracted, **kwargs):
        if create:
            Device.objects.bulk_create(
                [Device(node=obj, index=i, serial=f"{obj.hostname}-gpu{i}") for i in range(obj.card_count)]
            )


class OfferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Offer

    cluster = factory.SubFactory(ClusterFactory)
    accelerator_model = factory.LazyFunction(accelerator)
    price_per_card_hour_minor = 2500  # 25.00 CNY per card-hour
    currency = "CNY"
    min_duration_hours = 1
    max_duration_hours = 24 * 30
