"""Metering: usage samples from the node agents, and their hourly rollup.

**Billing reads this first.** Billable seconds of a reservation come from its *active periods*
(healthy -> released, minus downtime), recorded by the reservation lifecycle - NOT from usage
samples. Samples are the evidence (the buyer's cards were powered and doing work) and the
utilization data for dashboards; a missing, late or duplicated sample never changes what a buyer
pays. That is why UsageHourly has no "billable" column: it would be a second, weaker source of truth.

Flow
----
1. The agent sends `POST /api/agent/usage/` (authenticated by its node's agent key) with up to
   MAX_BATCH_SAMPLES samples: per device and window [window_start, window_end), busy seconds,
   utilization %, memory used (MiB), power (W), and a UUID the agent chose.
2. services.usage_samples_ingest checks the shapes and formats in Python, then hands the request's
   JSON to PostgreSQL in ONE statement that reads it (json_to_recordset), checks every range,
   window and device, attributes each sample to the reservation whose allocation covers the
   window's midpoint (NULL when the device was idle), inserts with ON CONFLICT DO NOTHING
   RETURNING, and marks the touched (device, hour) pairs dirty (UsageRollupDirty). If any sample
   breaks a rule nothing is inserted, and Python works out the per-field reasons for the 400.
   The answer counts new samples and duplicates.
3. Celery beat runs services.usage_rollup_refresh every 5 minutes: it takes dirty (device, hour)
   pairs (FOR UPDATE SKIP LOCKED, so workers never do the same work) and recomputes those hours
   set-based from the raw samples with INSERT ... ON CONFLICT DO UPDATE. A late sample therefore
   corrects its hour; running the refresh twice changes nothing.
4. partitions.usage_partitions_maintain (beat, hourly) creates the daily partitions ahead and drops
   those past USAGE_SAMPLE_RETENTION_DAYS. The hourly rollup is kept.
5. Readers (billing's evidence, dashboards) use selectors.py: the hourly rows of a reservation and
   their totals.

The dedupe key: (device, window_start)
--------------------------------------
A primary key of a partitioned table must contain the partition key (window_start), so the choice
was (sample_id, window_start) or (device, window_start). A retry of the same batch carries the same
ids and the same windows: both keys catch it. But an agent that restarts and loses its buffer may
measure the same window again under a NEW id; (sample_id, window_start) would then count that
window twice, (device, window_start) cannot. So the key is (device, window_start): a device has at
most one sample per window start, the first one stored wins, and later ones are duplicates.
sample_id is kept on the row as evidence of which report it came from, not as a key.
Known limit: two samples of one device whose windows overlap but start at different instants are
both kept (checking overlap across batches would cost a range probe per sample); the agent never
produces them, as each window starts where the previous one ended.

Attribution (which reservation) is decided once, at ingest, and never rewritten: the sample shows
what the calendar said when the evidence arrived.

Scale: 100,000 cards x 1 sample a minute = ~1,700 samples/s, 144 million rows a day, roughly
20 GB a day with the key index - hence daily partitions (dropping a day is a metadata operation,
never a DELETE of 144 M rows) and no foreign keys on the raw table.
"""
