"""Texts the system stored in English about nodes, shown in the reader's language.

A node's status changes and reliability events keep a reason written when they happened, in English
(by the system: "cluster retired", "no agent heartbeat for more than 180 seconds"; by an operator: the
note they typed after a fixed prefix). The pages word the system's part again in the active language;
what a person typed, and anything not recognised (rows of older versions, an agent's own error text),
is shown as stored. The same approach as billing.display.
"""

import re

from django.utils.translation import gettext

_SYSTEM = [
    (re.compile(r"changed by the provider"), lambda m: gettext("changed by the provider")),
    (re.compile(r"cluster retired"), lambda m: gettext("cluster retired")),
    (re.compile(r"node agent heartbeats resumed"), lambda m: gettext("node agent heartbeats resumed")),
    (re.compile(r"marked failed by an operator: (?P<note>.*)", re.S),
     lambda m: gettext("marked failed by an operator: %(note)s") % {"note": m["note"]}),
    (re.compile(r"(?:no agent heartbeat|silent) for more than (?P<seconds>\d+) seconds"),
     lambda m: gettext("no agent heartbeat for more than %(seconds)s seconds") % {"seconds": m["seconds"]}),
    (re.compile(r"the workload of reservation (?P<pk>\d+) stopped in service"),
     lambda m: gettext("the workload of reservation %(pk)s stopped in service") % {"pk": m["pk"]}),
    (re.compile(r"(?P<n>\d+) reservation\(s\) in service moved or ended \((?P<why>.*)\)", re.S),
     lambda m: gettext("%(n)s reservation(s) in service moved or ended (%(why)s)") % {
         "n": m["n"], "why": node_reason_display(m["why"])}),
]


def node_reason_display(text: str) -> str:
    """A node status change's reason or a reliability event's details, in the active language."""
    for pattern, say in _SYSTEM:
        match = pattern.fullmatch(text or "")
        if match:
            return say(match)
    return text
