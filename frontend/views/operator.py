"""Operators' pages (/operator/): nodes off the market for a fault, reservations being moved, and the
"mark node failed" action. Platform operators only (accounts.selectors.user_is_operator); anyone else
gets 403. Thin: each view checks who may do what, then calls one selector or service."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.selectors import user_is_operator
from accounts.views import add_service_errors
from inventory.allocations import reservations_per_node
from inventory.forms import NodeMarkFailedForm
from inventory.models import Node
from inventory.selectors import nodes_failed, nodes_serving
from inventory.services import node_mark_failed
from marketplace.selectors import reservations_migrating


def _require_operator(request) -> None:
    if not user_is_operator(user=request.user):
        raise PermissionDenied(_("The operators' pages are for platform operators."))


def _page(request, form, *, status: int = 200):
    nodes = list(nodes_failed())
    counts = reservations_per_node(node_ids=[node.pk for node in nodes])
    for node in nodes:
        node.reservations_affected = counts.get(node.pk, 0)
    return render(request, "operator/home.html", {
        "nodes": nodes, "migrating": reservations_migrating(), "form": form, "serving": nodes_serving(),
    }, status=status)


@login_required
def home(request):
    _require_operator(request)
    return _page(request, NodeMarkFailedForm())


@login_required
@require_POST
def node_mark_failed_view(request):
    _require_operator(request)
    form = NodeMarkFailedForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    node = get_object_or_404(Node, pk=form.cleaned_data["node"])
    try:
        node_mark_failed(node=node, actor=request.user, reason=form.cleaned_data["reason"], cause=form.cleaned_data["cause"])
    except ValidationError as error:
        add_service_errors(form, error)
        return _page(request, form, status=400)
    messages.success(request, _("%(node)s is marked failed; its reservations are being moved to other cards.") % {"node": node.hostname})
    return redirect("frontend:operator-home")
