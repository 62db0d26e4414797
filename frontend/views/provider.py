"""Provider pages (/provider/): sites, clusters, nodes, offers, maintenance windows, CSV import,
utilization. Thin: each view checks who may do what, then calls one inventory service or selector.

Reading needs "view" in the active organization, changing needs "manage_inventory" (a provider
organization); objects are looked up inside the active organization's inventory only, so another
organization's object is a 404.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from accounts.jobs import job_list
from accounts.models import Job
from accounts.selectors import user_can
from accounts.views import add_service_errors
from inventory import agent_services, reliability, selectors, services
from inventory.forms import (
    ClusterForm,
    MaintenanceWindowForm,
    NodeEditForm,
    NodeForm,
    NodeImportForm,
    OfferForm,
    SiteForm,
)
from inventory.importers import COLUMNS, NODE_IMPORT_MAX_BYTES, NodeImportInvalid, node_import_template
from inventory.models import Node

NODES_PER_PAGE = 200
RECENT_IMPORTS = 10


def _organization(request, *, change: bool = False):
    """The active organization, if the user may read (or, with change=True, edit) its inventory."""
    organization = request.organization
    if organization is None or not organization.is_provider:
        raise PermissionDenied(_("Provider pages are for members of a provider organization."))
    if not user_can(user=request.user, organization=organization, action="view"):
        raise PermissionDenied
    if change and not user_can(user=request.user, organization=organization, action="manage_inventory"):
        raise PermissionDenied(_("Your role does not allow changing inventory."))
    return organization


def _can_change(request) -> bool:
    return user_can(user=request.user, organization=request.organization, action="manage_inventory")


def _form_page(request, *, form, title: str, back: str, submit: str = "", intro: str = ""):
    submit = submit or _("Save")
    return render(
        request, "provider/form.html", {"form": form, "title": title, "back": back, "submit": submit, "intro": intro}
    )


def _button_action(request, action, *, done: str) -> None:
    """Run the service behind a button (retire, withdraw). Its refusal - a rule, or bookings that
    still hold the cards - is shown on the page the button sends the user back to."""
    try:
        action()
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    except services.InventoryConflict as conflict:
        messages.error(request, conflict.message)
    else:
        messages.success(request, done)


# --------------------------------------------------------------------------------------------- sites


@login_required
def home(request):
    organization = _organization(request)
    return render(
        request, "provider/home.html",
        {"sites": selectors.sites_with_cards(organization=organization), "can_change": _can_change(request)},
    )


@login_required
def site_create(request):
    organization = _organization(request, change=True)
    form = SiteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            site = services.site_create(owner=organization, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Site '%(name)s' created.") % {"name": site.name})
            return redirect("frontend:provider-site", pk=site.pk)
    return _form_page(request, form=form, title=_("New site"), back="/provider/", submit=_("Create site"))


@login_required
def site_detail(request, pk: int):
    organization = _organization(request)
    site = get_object_or_404(selectors.site_list(organization=organization), pk=pk)
    utilization = selectors.site_utilization(site=site, days=14)
    peak = max([day["listed"] for day in utilization] + [day["booked"] + day["maintenance"] for day in utilization] + [1])
    return render(
        request, "provider/site_detail.html",
        {
            "site": site,
            "clusters": selectors.site_clusters(site=site),
            "cards": selectors.site_cards_by_model_and_status(site=site),
            "statuses": Node.Status.choices,
            "utilization": utilization,
            "peak": peak,
            "provider_reliability": reliability.provider_reliability_score(organization=site.owner),
            "can_change": _can_change(request),
        },
    )


@login_required
def site_edit(request, pk: int):
    organization = _organization(request, change=True)
    site = get_object_or_404(selectors.site_list(organization=organization), pk=pk)
    form = SiteForm(request.POST or None, site=site, initial=SiteForm.initial_for(site))
    if request.method == "POST" and form.is_valid():
        try:
            services.site_update(site=site, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        except services.InventoryConflict as conflict:
            form.add_error(conflict.field if conflict.field in form.fields else None, conflict.message)
        else:
            messages.success(request, _("Site saved."))
            return redirect("frontend:provider-site", pk=site.pk)
    return _form_page(request, form=form, title=_("Edit %(name)s") % {"name": site.name}, back=f"/provider/sites/{site.pk}/")


@login_required
@require_POST
def site_retire(request, pk: int):
    organization = _organization(request, change=True)
    site = get_object_or_404(selectors.site_list(organization=organization), pk=pk)
    _button_action(request, lambda: services.site_retire(site=site, actor=request.user), done=_("Site '%(name)s' retired.") % {"name": site.name})
    return redirect("frontend:provider-site", pk=site.pk)


# ------------------------------------------------------------------------------------------ clusters


@login_required
def cluster_create(request, site_pk: int):
    organization = _organization(request, change=True)
    site = get_object_or_404(selectors.site_list(organization=organization), pk=site_pk)
    form = ClusterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            cluster = services.cluster_create(site=site, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Cluster '%(name)s' created.") % {"name": cluster.name})
            return redirect("frontend:provider-cluster", pk=cluster.pk)
    return _form_page(request, form=form, title=_("New cluster in %(site_name)s") % {"site_name": site.name},
                      back=f"/provider/sites/{site.pk}/", submit=_("Create cluster"))


@login_required
def cluster_detail(request, pk: int):
    organization = _organization(request)
    cluster = get_object_or_404(selectors.cluster_list(organization=organization), pk=pk)
    nodes = Paginator(cluster.nodes.select_related("accelerator_model").order_by("hostname"), NODES_PER_PAGE)
    return render(
        request, "provider/cluster_detail.html",
        {
            "cluster": cluster,
            "nodes": nodes.get_page(request.GET.get("page")),
            "node_count": nodes.count,
            "offers": selectors.offers_priced(organization=organization, cluster=cluster),
            "windows": selectors.maintenance_window_upcoming(cluster=cluster)[:5],
            "can_change": _can_change(request),
        },
    )


@login_required
def cluster_edit(request, pk: int):
    organization = _organization(request, change=True)
    cluster = get_object_or_404(selectors.cluster_list(organization=organization), pk=pk)
    initial = {"name": cluster.name, "fabric": cluster.fabric, "fabric_bandwidth_gbps": cluster.fabric_bandwidth_gbps}
    form = ClusterForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.cluster_update(cluster=cluster, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Cluster saved."))
            return redirect("frontend:provider-cluster", pk=cluster.pk)
    return _form_page(request, form=form, title=_("Edit %(name)s") % {"name": cluster}, back=f"/provider/clusters/{cluster.pk}/")


# --------------------------------------------------------------------------------------------- nodes


@login_required
def node_create(request, cluster_pk: int):
    organization = _organization(request, change=True)
    cluster = get_object_or_404(selectors.cluster_list(organization=organization), pk=cluster_pk)
    form = NodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            node = services.node_create(cluster=cluster, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, ngettext(
                "Node '%(hostname)s' listed with %(cards)d card.", "Node '%(hostname)s' listed with %(cards)d cards.", node.card_count,
            ) % {"hostname": node.hostname, "cards": node.card_count})
            return redirect("frontend:provider-cluster", pk=cluster.pk)
    return _form_page(request, form=form, title=_("New node in %(name)s") % {"name": cluster},
                      back=f"/provider/clusters/{cluster.pk}/", submit=_("List node"))


@login_required
def node_edit(request, pk: int):
    organization = _organization(request, change=True)
    node = get_object_or_404(selectors.node_list(organization=organization), pk=pk)
    initial = {name: getattr(node, name) for name in ("hostname", "cpu_model", "cpu_cores", "ram_gb", "disk_gb", "status")}
    form = NodeEditForm(request.POST or None, node=node, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.node_update(node=node, actor=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        except services.InventoryConflict as conflict:
            form.add_error(conflict.field if conflict.field in form.fields else None, conflict.message)
        else:
            messages.success(request, _("Node saved."))
            return redirect("frontend:provider-cluster", pk=node.cluster_id)
    intro = _("%(cards)d × %(model)s (fixed once listed: retire the node and list a new one to change them).") % {
        "cards": node.card_count, "model": node.accelerator_model,
    }
    return _form_page(request, form=form, title=_("Edit %(name)s") % {"name": node.hostname}, back=f"/provider/clusters/{node.cluster_id}/", intro=intro)


@login_required
@require_POST
def node_retire(request, pk: int):
    organization = _organization(request, change=True)
    node = get_object_or_404(selectors.node_list(organization=organization), pk=pk)
    _button_action(request, lambda: services.node_retire(node=node, actor=request.user), done=_("Node '%(hostname)s' retired.") % {"hostname": node.hostname})
    return redirect("frontend:provider-cluster", pk=node.cluster_id)


@login_required
def nodes_import(request):
    organization = _organization(request, change=True)
    form = NodeImportForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        # The file's shape is checked here, at once; its rows by the import job, with progress on its page.
        try:
            job = services.nodes_import_job_start(
                organization=organization, data=form.cleaned_data["file"].read(NODE_IMPORT_MAX_BYTES + 1), actor=request.user
            )
        except NodeImportInvalid as invalid:
            report = invalid
            form.add_error("file", invalid.message)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            return redirect("frontend:job", job_id=job.pk)
    return render(
        request, "provider/import.html",
        {
            "form": form,
            "report": report,
            "columns": COLUMNS,
            "clusters": selectors.cluster_list(organization=organization),
            "recent_imports": job_list(user=request.user, organization=organization).filter(kind=Job.Kind.NODE_IMPORT)
            .defer("input_data", "result_file")[:RECENT_IMPORTS],
        },
        status=400 if (request.method == "POST" and not form.is_valid()) else 200,
    )


@login_required
def nodes_import_template(request):
    organization = _organization(request)
    cluster = None
    raw = request.GET.get("cluster", "")
    if raw:
        # isdigit() accepts '²', which int() refuses: parse, and treat anything else as "no such cluster".
        try:
            cluster_id = int(raw)
        except ValueError:
            raise Http404 from None
        cluster = get_object_or_404(selectors.cluster_list(organization=organization), pk=cluster_id)
    response = HttpResponse(node_import_template(cluster=cluster), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="computeflow-nodes-template.csv"'
    return response


# -------------------------------------------------------------------------------------------- offers


def _offer_form_kwargs(form) -> dict:
    fields = dict(form.cleaned_data)
    fields["price_per_card_hour_minor"] = services.price_major_to_minor(price=fields.pop("price_per_card_hour"))
    return fields


@login_required
def offer_create(request, cluster_pk: int):
    organization = _organization(request, change=True)
    cluster = get_object_or_404(selectors.cluster_list(organization=organization), pk=cluster_pk)
    form = OfferForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            offer = services.offer_create(cluster=cluster, actor=request.user, **_offer_form_kwargs(form))
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Offer for %(model)s created.") % {"model": offer.accelerator_model.name})
            return redirect("frontend:provider-cluster", pk=cluster.pk)
    return _form_page(request, form=form, title=_("New offer in %(name)s") % {"name": cluster},
                      back=f"/provider/clusters/{cluster.pk}/", submit=_("Create offer"))


@login_required
def offer_edit(request, pk: int):
    organization = _organization(request, change=True)
    offer = get_object_or_404(selectors.offer_list(organization=organization).filter(is_active=True), pk=pk)
    period = offer.rentable_period
    initial = {
        "price_per_card_hour": services.price_minor_to_major(offer.price_per_card_hour_minor),
        "currency": offer.currency,
        "min_duration_hours": offer.min_duration_hours,
        "max_duration_hours": offer.max_duration_hours,
        "rentable_from": period.lower if period else None,
        "rentable_until": period.upper if period else None,
    }
    form = OfferForm(request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        try:
            services.offer_update(offer=offer, actor=request.user, **_offer_form_kwargs(form))
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Offer saved. Reservations already made keep their price."))
            return redirect("frontend:provider-cluster", pk=offer.cluster_id)
    return _form_page(request, form=form, title=_("Edit offer: %(model)s") % {"model": offer.accelerator_model.name}, back=f"/provider/clusters/{offer.cluster_id}/")


@login_required
@require_POST
def offer_retire(request, pk: int):
    organization = _organization(request, change=True)
    offer = get_object_or_404(selectors.offer_list(organization=organization), pk=pk)
    _button_action(
        request, lambda: services.offer_retire(offer=offer, actor=request.user),
        done=_("Offer for %(model)s withdrawn.") % {"model": offer.accelerator_model.name},
    )
    return redirect("frontend:provider-cluster", pk=offer.cluster_id)


# ------------------------------------------------------------------------------- maintenance windows


@login_required
def maintenance(request, cluster_pk: int):
    organization = _organization(request)
    cluster = get_object_or_404(selectors.cluster_list(organization=organization), pk=cluster_pk)
    form = MaintenanceWindowForm(request.POST or None, cluster=cluster)
    status_code = 200
    if request.method == "POST":
        _organization(request, change=True)
        if form.is_valid():
            try:
                services.maintenance_window_create(cluster=cluster, actor=request.user, **form.cleaned_data)
            except ValidationError as error:
                add_service_errors(form, error)
            except services.InventoryConflict as conflict:
                form.add_error("start", conflict.message)
                status_code = 409
            else:
                messages.success(request, _("Maintenance window planned; its cards are off the market for that time."))
                return redirect("frontend:provider-maintenance", cluster_pk=cluster.pk)
        if status_code == 200:
            status_code = 400
    windows = selectors.maintenance_window_list(organization=organization).filter(cluster=cluster)
    return render(
        request, "provider/maintenance.html",
        {"cluster": cluster, "form": form, "windows": windows, "can_change": _can_change(request)},
        status=status_code,
    )


@login_required
@require_POST
def maintenance_cancel(request, pk: int):
    organization = _organization(request, change=True)
    window = get_object_or_404(selectors.maintenance_window_list(organization=organization), pk=pk)
    services.maintenance_window_cancel(window=window, actor=request.user)
    messages.success(request, _("Maintenance window cancelled; its cards are back on the market."))
    return redirect("frontend:provider-maintenance", cluster_pk=window.cluster_id)


# ------------------------------------------------------------------------------ node detail and agent


@login_required
def node_detail(request, pk: int):
    """A node: its listing, what its agent last reported, the mismatch flag, and its agent keys."""
    organization = _organization(request)
    node = get_object_or_404(selectors.node_list(organization=organization), pk=pk)
    return render(
        request,
        "provider/node_detail.html",
        {
            "node": node,
            "tokens": agent_services.node_agent_token_list(node=node),
            "status_changes": node.status_changes.select_related("actor").order_by("-created_at")[:20],
            "reliability_events": reliability.node_reliability_events(node=node)[:20],
            "new_key": request.session.pop(f"new-agent-key-{node.pk}", None),
            "can_change": _can_change(request),
        },
    )


@login_required
@require_POST
def node_agent_key_create(request, pk: int):
    organization = _organization(request, change=True)
    node = get_object_or_404(selectors.node_list(organization=organization), pk=pk)
    if node.status == Node.Status.RETIRED:
        messages.error(request, _("A retired node takes no agent keys."))
        return redirect("frontend:provider-node", pk=node.pk)
    _token, key = agent_services.node_agent_token_create(node=node)
    # Shown once, on the next page view (post/redirect/get), then gone from the session.
    request.session[f"new-agent-key-{node.pk}"] = key
    return redirect("frontend:provider-node", pk=node.pk)


@login_required
@require_POST
def agent_keys_bulk(request):
    """Agent keys for many nodes at once: the nodes ticked on a cluster page (scope "selected"), or
    every node of a cluster or site that has no working key (scope "missing").

    The answer is the keys themselves, as a CSV download (hostname,node_id,token): they are shown
    once and never stored in clear, not even in the session. A refusal goes back to the page the
    request came from, with the reason.
    """
    organization = _organization(request, change=True)
    cluster = site = None
    if request.POST.get("cluster"):
        cluster = get_object_or_404(selectors.cluster_list(organization=organization), pk=_int_or_404(request.POST["cluster"]))
    elif request.POST.get("site"):
        site = get_object_or_404(selectors.site_list(organization=organization), pk=_int_or_404(request.POST["site"]))
    back = (
        redirect("frontend:provider-cluster", pk=cluster.pk) if cluster
        else redirect("frontend:provider-site", pk=site.pk) if site
        else redirect("frontend:provider-home")
    )
    if request.POST.get("scope") == "missing":
        node_ids = list(
            agent_services.nodes_without_agent_key(
                organization=organization, cluster_id=cluster.pk if cluster else None, site_id=site.pk if site else None
            ).values_list("pk", flat=True)
        )
        if not node_ids:
            messages.error(request, _("Every node here already has a working agent key (or is retired)."))
            return back
    else:
        try:
            node_ids = [int(value) for value in request.POST.getlist("node")]
        except ValueError:
            messages.error(request, _("Choose nodes from the list."))
            return back
    try:
        keys = agent_services.node_agent_tokens_create_bulk(organization=organization, node_ids=node_ids)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return back
    response = HttpResponse(agent_services.agent_keys_csv(keys=keys), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="computeflow-agent-keys-{timezone.localdate():%Y%m%d}.csv"'
    response["Cache-Control"] = "no-store"  # the keys exist only in this answer
    return response


def _int_or_404(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise Http404 from None


@login_required
@require_POST
def node_agent_key_revoke(request, pk: int, token_pk: int):
    organization = _organization(request, change=True)
    node = get_object_or_404(selectors.node_list(organization=organization), pk=pk)
    token = get_object_or_404(agent_services.node_agent_token_list(node=node), pk=token_pk)
    agent_services.node_agent_token_revoke(token=token)
    messages.success(request, _("Agent key %(prefix)s… revoked: the agent using it is refused from now on.") % {"prefix": token.prefix})
    return redirect("frontend:provider-node", pk=node.pk)


@login_required
@require_POST
def node_mismatch_resolve(request, pk: int):
    organization = _organization(request, change=True)
    node = get_object_or_404(selectors.node_list(organization=organization), pk=pk)
    try:
        agent_services.node_mismatch_resolve(node=node, actor=request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("The node matches its listing again and is back on the market."))
    return redirect("frontend:provider-node", pk=node.pk)
