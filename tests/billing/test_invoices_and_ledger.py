"""Invoice states (one transition service, audited), gapless numbers per currency at approval,
credit notes instead of edits, and a double-entry ledger that PostgreSQL keeps balanced and append-only."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, IntegrityError, connection, transaction

from billing.models import Invoice, InvoiceLine, JournalEntry, JournalPosting, LedgerAccount
from billing.selectors import ledger_balances
from billing.services import (
    CreditNoteRefused,
    InvoiceStateError,
    billing_run,
    credit_note_create,
    invoice_set_status,
    ledger_reconcile,
    platform_fee_minor,
)
from tests.billing.conftest import APRIL, MARCH, H, served
from tests.factories import OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


def approve(invoice, actor=None):
    invoice_set_status(invoice=invoice, status="pending_review", actor=actor, reason="run done")
    return invoice_set_status(invoice=invoice, status="approved", actor=actor, reason="evidence checked")


def check_balanced_now():
    """Run the deferred balance trigger now (tests roll back, so commit never comes)."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


@pytest.fixture
def drafts(offer, usd_offer):
    """Three buyers' March drafts: two in CNY, one in USD."""
    buyers = [OrganizationFactory() for _ in range(3)]
    served(buyer=buyers[0], offer=offer, periods=[(MARCH + H, MARCH + 3 * H)])
    served(buyer=buyers[1], offer=offer, cards=3, periods=[(MARCH + H, MARCH + 2 * H)], node_index=1)
    served(buyer=buyers[2], offer=usd_offer, cards=1, periods=[(MARCH + H, MARCH + 2 * H + timedelta(seconds=17))])
    billing_run(now=APRIL + H)
    return [Invoice.objects.get(buyer=b) for b in buyers]


def test_states_move_only_along_the_map_and_each_move_is_audited(drafts):
    finance = UserFactory()
    invoice = drafts[0]
    with pytest.raises(InvoiceStateError):
        invoice_set_status(invoice=invoice, status="paid", actor=finance)
    approve(invoice, finance)
    invoice_set_status(invoice=invoice, status="open", actor=finance)
    invoice_set_status(invoice=invoice, status="open", actor=finance)  # a double click changes nothing
    invoice_set_status(invoice=invoice, status="paid", actor=finance, reason="manual transfer")
    with pytest.raises(InvoiceStateError):
        invoice_set_status(invoice=invoice, status="void", actor=finance)
    moves = list(invoice.status_changes.values_list("from_status", "to_status", "reason"))
    assert moves == [("", "draft", "billing run"), ("draft", "pending_review", "run done"), ("pending_review", "approved", "evidence checked"),
                     ("approved", "open", ""), ("open", "paid", "manual transfer")]


def test_numbers_are_given_at_approval_in_order_per_currency_and_a_rollback_leaves_no_gap(drafts):
    cny_a, cny_b, usd = drafts
    # A draft has no number
    assert {d.number for d in drafts} == {None}
    # An approval that fails after taking its number gives the number back
    with pytest.raises(RuntimeError), transaction.atomic():
        approve(cny_b)
        raise RuntimeError("crash after numbering")
    assert approve(cny_a).number == 1
    assert approve(usd).number == 1  # each currency counts on its own
    cny_b.refresh_from_db()
    assert cny_b.status == "draft"
    cny_b = approve(cny_b)
    assert (cny_b.number, cny_b.display_number) == (2, "CNY-000002")


def test_an_issued_invoice_is_corrected_by_credit_notes_never_beyond_what_it_carries(drafts):
    invoice = approve(drafts[0])
    with pytest.raises(CreditNoteRefused):
        credit_note_create(invoice=drafts[1], amount_minor=100, reason="draft", actor=None)
    with pytest.raises(CreditNoteRefused):
        credit_note_create(invoice=invoice, amount_minor=100, reason=" ", actor=None)
    first = credit_note_create(invoice=invoice, amount_minor=invoice.total_minor - 100, reason="goodwill", actor=None)
    with pytest.raises(CreditNoteRefused):
        credit_note_create(invoice=invoice, amount_minor=101, reason="too much", actor=None)
    second = credit_note_create(invoice=invoice, amount_minor=100, reason="rest", actor=None)
    assert (first.number, second.number, second.display_number) == (1, 2, "CN-CNY-000002")
    check_balanced_now()
    assert ledger_reconcile() == []


def test_approval_posts_receivable_against_fee_revenue_and_provider_payable(drafts, settings):
    settings.PLATFORM_FEE_BPS = 1500
    invoice = approve(drafts[0])  # 8 cards x 2 h x 25.00 = 400.00
    line = invoice.lines.get()
    postings = {(p.account, p.organization_id): p.amount_minor for p in JournalPosting.objects.filter(entry__invoice=invoice)}
    assert postings == {
        (LedgerAccount.BUYER_RECEIVABLES, invoice.buyer_id): 40_000,
        (LedgerAccount.PLATFORM_FEE_REVENUE, None): -6_000,
        (LedgerAccount.PROVIDER_PAYABLES, line.provider_id): -34_000,
    }
    assert platform_fee_minor(40_000) == 6_000
    check_balanced_now()


def test_sla_credit_lines_are_booked_to_credits_issued(drafts):
    invoice = drafts[0]
    charge = invoice.lines.get()
    InvoiceLine.objects.create(invoice=invoice, reservation_id=charge.reservation_id, provider_id=charge.provider_id, kind="sla_credit",
                               period_start=charge.period_start, period_end=charge.period_end, card_seconds=3600,
                               price_per_card_hour_minor=2500, amount_minor=-2500)
    Invoice.objects.filter(pk=invoice.pk).update(total_minor=charge.amount_minor - 2500)
    approve(invoice)
    balances = ledger_balances()
    assert balances[(LedgerAccount.CREDITS_ISSUED, "CNY")] == 2500
    assert balances[(LedgerAccount.BUYER_RECEIVABLES, "CNY")] == charge.amount_minor - 2500
    check_balanced_now()
    assert ledger_reconcile() == []


def test_voiding_an_issued_invoice_reverses_its_entries_and_the_ledger_still_sums_to_zero(drafts):
    invoice = approve(drafts[0])
    credit_note_create(invoice=invoice, amount_minor=500, reason="late start", actor=None)
    invoice_set_status(invoice=invoice, status="open")
    invoice_set_status(invoice=invoice, status="void", reason="billed the wrong organization")
    assert all(b == 0 for (account, currency), b in ledger_balances().items())
    assert JournalEntry.objects.filter(invoice=invoice, kind="invoice_voided", reverses__isnull=False).count() == 2
    assert set(invoice.lines.values_list("is_void", flat=True)) == {True}
    check_balanced_now()
    assert ledger_reconcile() == []


def test_postgresql_refuses_an_unbalanced_journal_entry(drafts):
    entry = JournalEntry.objects.create(kind="credit_note", memo="hand-made")
    JournalPosting.objects.create(entry=entry, account=LedgerAccount.BUYER_RECEIVABLES, currency="CNY", amount_minor=100)
    JournalPosting.objects.create(entry=entry, account=LedgerAccount.CREDITS_ISSUED, currency="CNY", amount_minor=-99)
    with pytest.raises(IntegrityError, match="does not balance"):
        check_balanced_now()


def test_postgresql_refuses_an_entry_balanced_only_across_currencies(drafts):
    entry = JournalEntry.objects.create(kind="credit_note", memo="hand-made")
    JournalPosting.objects.create(entry=entry, account=LedgerAccount.BUYER_RECEIVABLES, currency="CNY", amount_minor=100)
    JournalPosting.objects.create(entry=entry, account=LedgerAccount.CREDITS_ISSUED, currency="USD", amount_minor=-100)
    with pytest.raises(IntegrityError, match="does not balance"):
        check_balanced_now()


def test_the_ledger_is_append_only(drafts):
    approve(drafts[0])
    posting = JournalPosting.objects.first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        JournalPosting.objects.filter(pk=posting.pk).update(amount_minor=1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        JournalPosting.objects.filter(pk=posting.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        JournalEntry.objects.filter(pk=posting.entry_id).update(memo="edited")


def test_reconcile_reports_a_receivable_that_does_not_match_the_invoice(drafts, capsys):
    invoice = approve(drafts[0])
    call_command("billing_reconcile")
    assert "reconciles" in capsys.readouterr().out
    # Given a balanced but wrong entry: the receivable of the invoice moved to Stripe clearing without a payment
    entry = JournalEntry.objects.create(kind="credit_note", invoice=invoice, memo="stray")
    JournalPosting.objects.create(entry=entry, account=LedgerAccount.STRIPE_CLEARING, currency="CNY", amount_minor=700)
    JournalPosting.objects.create(entry=entry, account=LedgerAccount.BUYER_RECEIVABLES, organization=invoice.buyer, currency="CNY",
                                  amount_minor=-700)
    with pytest.raises(CommandError, match="2 difference"):
        call_command("billing_reconcile")
    # Then both sides of the stray entry are reported
    assert (f"invoice {invoice.display_number}: buyer_receivables of organization {invoice.buyer_id} is {invoice.total_minor - 700} "
            f"in the ledger, {invoice.total_minor} by the documents") in (out := capsys.readouterr().out)
    assert f"invoice {invoice.display_number}: stripe_clearing is 700 in the ledger, 0 by the documents" in out


@pytest.mark.django_db(transaction=True)
def test_an_unbalanced_entry_is_refused_at_commit_and_nothing_of_it_stays():
    # Given a transaction that writes a journal entry posting by posting, unbalanced at the end
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        entry = JournalEntry.objects.create(kind="credit_note", memo="hand-made")
        JournalPosting.objects.create(entry=entry, account=LedgerAccount.BUYER_RECEIVABLES, currency="CNY", amount_minor=100)
        JournalPosting.objects.create(entry=entry, account=LedgerAccount.CREDITS_ISSUED, currency="CNY", amount_minor=-99)
    # Then the commit failed and the whole entry is gone; a balanced one commits
    assert not JournalEntry.objects.exists()
    with transaction.atomic():
        entry = JournalEntry.objects.create(kind="credit_note", memo="hand-made")
        JournalPosting.objects.create(entry=entry, account=LedgerAccount.BUYER_RECEIVABLES, currency="CNY", amount_minor=100)
        JournalPosting.objects.create(entry=entry, account=LedgerAccount.CREDITS_ISSUED, currency="CNY", amount_minor=-100)
    assert JournalPosting.objects.count() == 2


def test_reconcile_reports_a_total_that_is_not_the_sum_of_the_lines(drafts):
    invoice = drafts[1]
    Invoice.objects.filter(pk=invoice.pk).update(total_minor=invoice.total_minor + 1)
    assert ledger_reconcile() == [f"invoice {invoice.display_number}: total {invoice.total_minor + 1}, its lines sum to {invoice.total_minor}"]


@pytest.mark.django_db(transaction=True)
def test_approvals_at_once_get_consecutive_numbers_and_a_failed_one_leaves_no_gap(offer):
    import threading

    buyers = [OrganizationFactory() for _ in range(8)]
    for n, buyer in enumerate(buyers):
        served(buyer=buyer, offer=offer, cards=1, periods=[(MARCH + n * H, MARCH + (n + 1) * H)], node_index=n % 2)
    billing_run(now=APRIL + H)
    invoices = list(Invoice.objects.order_by("pk"))
    for invoice in invoices:
        invoice_set_status(invoice=invoice, status="pending_review")
    barrier = threading.Barrier(len(invoices))
    errors = []

    def approve_one(invoice, fail):
        try:
            barrier.wait()
            with transaction.atomic():
                invoice_set_status(invoice=invoice, status="approved")
                if fail:
                    raise RuntimeError("the approval's transaction fails after numbering")
        except RuntimeError:
            pass
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=approve_one, args=(invoice, n % 3 == 0)) for n, invoice in enumerate(invoices)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    numbers = sorted(Invoice.objects.filter(status="approved").values_list("number", flat=True))
    assert numbers == list(range(1, len(invoices) - 3 + 1))  # 3 of 8 failed: 1..5, no hole, no duplicate
    assert set(Invoice.objects.exclude(status="approved").values_list("number", flat=True)) == {None}
