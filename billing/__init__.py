"""Billing: rating, invoices, credit notes, the billing run, the double-entry ledger, and payments
through Stripe (collection, refunds, provider payouts, the webhook inbox); the finance, buyer and
provider pages are frontend/views/billing.py and frontend/views/payments.py.

Rating (billing/rating.py, pure functions)
    What a reservation costs in a period [start, end), in integer minor units of the reservation's
    currency (CNY or USD, never converted):
    1. every instant (segment, downtime, period boundary) is floored to the whole UTC second, so
       splitting time at any boundary is exactly additive: no second billed twice, none lost;
    2. billable card-seconds = each service segment (marketplace.ReservationSegment: healthy to
       released, a move's gap left out) clipped to the period, minus any recorded downtime of its
       node that overlaps it, x its number of devices; an open segment counts to the end of the period;
    3. charge = sum(price locked at booking per card-hour x card-seconds) / 3600, exact, then rounded
       ONCE per invoice line by `rating.round_minor`: half up (x.5 -> x+1) to a whole minor unit.
       This is the one rounding rule of billing (the platform fee uses it too); it agrees with
       marketplace.pricing's reservation price for a period that covers every segment;
    4. card-hours down = each ReservationDowntime interval (failover writes it from the failed node's
       last heartbeat until served again) clipped to the period x the cards the reservation held on
       that node - not the overlap with segments: the failed node's segment closes where the downtime
       starts, so the gap is already uncharged and is never subtracted twice;
       SLA credit = BILLING_SLA_CREDIT_MULTIPLIER (N) x price per card-hour x card-hours down,
       rounded by the same rule, capped at the charge line; it is a separate `sla_credit` line;
    5. failed and cancelled reservations rate to zero.
    Downtime intervals are read by billing.selectors.reservation_downtimes (marketplace's ReservationDowntime).

Invoices (billing/models.py, billing/services.py)
    The billing run invoices each buyer's whole local months (BillingAccount.time_zone, taken from the
    first owner when the account is made; the 1st, 00:00)
    that have ended: one draft per currency, a charge line (and an SLA credit line) per reservation and
    provider, each charge with its evidence per device and hour (billable seconds beside the rollup's
    samples and utilization). Each month is built in ONE transaction that also moves the account's
    `invoiced_through` cursor, under the account's row lock: a crash loses that month whole and the
    rerun redoes it; `invoicing_status` is "started" while a run holds the account. PostgreSQL's
    exclusion constraint `invoice_line_no_double_billing` refuses two charge lines of non-void invoices
    over overlapping time of the same reservation and provider.
    States: draft -> pending_review -> approved -> open -> paid, or void / uncollectible
    (Invoice.TRANSITIONS), moved only by `invoice_set_status` (row lock, audit row). Approval gives the
    number (per currency, gapless: a locked NumberSequence row, so a rollback gives the number back) and
    posts to the ledger. After approval, corrections are credit notes (`credit_note_create`), never edits.

Ledger (JournalEntry / JournalPosting; debits > 0, credits < 0, integer minor units per currency)
    accounts (LedgerAccount):
      buyer_receivables     per buyer: what buyers owe (debit balance)
      stripe_clearing       money collected by Stripe, not yet refunded or paid out (debit balance)
      platform_fee_revenue  the platform's fee, PLATFORM_FEE_BPS of each charge line (credit balance)
      provider_payables     per provider: their share of charges, owed to them (credit balance)
      credits_issued        SLA credits and credit notes granted to buyers (debit balance; the platform bears them)
    entries:
      invoice approved   Dr receivables (total)  Dr credits_issued (SLA credits)
                         Cr platform_fee_revenue (fee per charge line)  Cr provider_payables (the rest)
      credit note        Dr credits_issued  Cr receivables
      invoice voided     the approval entry (and its credit notes' entries) reversed posting by posting
      payment            Dr stripe_clearing  Cr receivables (the amount collected)
      refund             Dr receivables  Cr stripe_clearing (a credit note on a paid invoice, paid back)
      payout             Dr provider_payables  Cr stripe_clearing (the transfer to the connected account)
      payout failed      the payout entry reversed (the payable is open again; the next run retries)
    PostgreSQL enforces the rules (migration 0002): a deferred constraint trigger refuses, at commit,
    any entry that does not sum to zero per currency; UPDATE and DELETE on the ledger are refused.
    `manage.py billing_reconcile` compares the ledger with invoices, credit notes, payments, refunds and payouts.

Payments (billing/payments.py; Stripe only through billing/stripe_gateway.py)
    Every money movement is (1) recorded as our row with a deterministic idempotency key under row
    locks and committed, (2) sent to Stripe outside any transaction, (3) applied from Stripe's answer
    under row locks, once (a final state never changes; the ledger is posted on the move into a state).
    A lost answer leaves the row pending; the retry reuses the key. Keys: customer-organization-<id>,
    invoice-<id>-attempt-<n> (PaymentAttempt), credit-note-<id>-refund (Refund),
    payout-invoice-<id>-provider-<id>-<attempt> (Payout; transfer_group invoice-<id>).
    Collection: invoice_pay charges the saved card off-session; declined -> the invoice stays open,
    Invoice.payment_error holds Stripe's message. Refunds: credit_note_create on a paid invoice enqueues
    refund_for_credit_note after commit; the beat's billing-stripe-events-sweep (refunds_sweep) drives
    again, with the same key, refunds left pending and credit notes issued after the payment that have
    no refund (a lost task, or a payment recorded late). A credit note is refused while a payment is
    pending (it would be charged in full). An attempt keeps the customer and card it was recorded with,
    so a resume repeats the same request. Payouts: the provider payables approval posted are the one
    truth; payout_run pays the open payable of each paid invoice and provider (one live payout each,
    a partial unique index), pending -> in_transit -> paid | failed (payout_set_status, audited).
    Webhooks: /stripe/webhook/ verifies the signature on the raw body, stores the event once
    (StripeEvent.event_id unique), answers 200; stripe_event_process (a task, after commit) re-reads the
    object from Stripe and applies it through the same functions, so duplicates and reordering change nothing.
"""
