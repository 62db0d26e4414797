"""Provisioning: from a booking whose start has come to running cards, through the provider's driver.

The pieces
----------
* ``marketplace.models.NodeAssignment`` - the desired state of one node for one reservation (which
  devices, which image, the buyer's SSH keys, a port, a deadline) and what the node last reported.
* ``drivers`` - THE SEAM between the reservation lifecycle and whatever runs workloads on a provider's
  machines. A driver has four operations: ``prepare`` (build the node's desired state), ``start``
  (publish / submit it), ``stop`` (ask for the workload to go) and ``health`` (what the node says).
  The lifecycle (``services``) reaches drivers only through the registry ``drivers.DRIVERS`` (by
  name, each assignment remembers its driver), so a Slurm or Kubernetes driver is a new class and a
  registry entry - the lifecycle does not change. The first driver is ``NodeAgentDriver``, a PULL
  model: "start" publishes the assignment (the agent polls ``GET /api/agent/assignments/``), "stop"
  sets desired=stop, and health is the state the agent last reported
  (``POST /api/agent/assignments/<id>/report/``).
* ``services`` - the lifecycle's side: ``reservation_provision`` (requested -> provisioning, publish
  the missing assignments; idempotent), ``assignment_report`` (an agent's report: activation when
  every open assignment runs, failure otherwise), ``reservations_sweep`` (re-drives what a lost task
  or a killed worker left behind, fails boots past their deadline, re-sends unconfirmed stops).
* ``selectors`` - what an agent is told, and the buyer's connection details.
* ``api`` - the agent endpoints (contract: /work/briefs/contract.md, "Agent API").

The rules
---------
* A reservation in provisioning (or migrating) turns active when EVERY open assignment of it reports
  running; active_from (the start of billing) is the server's arrival instant of the last report.
* A boot reported failed, or not running by its deadline: the reservation fails (from provisioning),
  nothing to pay, devices freed, the reason in its timeline; its other assignments get desired stop.
* The same while MIGRATING (the new cards of a failover did not start): the move is given up and the
  reservation ends at that instant, completed with notice (marketplace.failover.reservation_move_failed).
* A workload that dies IN SERVICE (reported failed, or stopped while it should run, on a node that
  still heartbeats): that node's share of the reservation fails over from the report's arrival, with a
  downtime record, exactly as if the node had failed for it (failover.reservation_workload_failover);
  with nothing equivalent free the reservation ends there with notice. It never keeps billing.
* Release, cancel, failure and the end of the period give every open assignment desired stop
  (reservation_set_status does it, so no path forgets); the lifecycle records active_to at that
  instant, not when the node confirms.
* Tasks take ids, lock the reservation row before its assignments (one lock order everywhere), and
  are safe to run again; enqueues happen after commit and a broker outage never fails a booking.
"""
