"""Operators' pages under /operator/: failed nodes, migrating reservations, mark a node failed."""

from django.urls import path

from frontend.views import operator

urlpatterns = [
    path("", operator.home, name="operator-home"),
    path("nodes/fail/", operator.node_mark_failed_view, name="operator-node-fail"),
]
