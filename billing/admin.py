"""Admin for billing's Stripe identities: finance enters a provider's Connect account id here (the
payouts go to it). Money rows (attempts, payouts, events) are read-only: only billing.payments writes them."""

from django.contrib import admin

from billing.models import BillingProfile, PaymentAttempt, Payout, StripeEvent


@admin.register(BillingProfile)
class BillingProfileAdmin(admin.ModelAdmin):
    list_display = ["organization", "stripe_customer_id", "payment_method_label", "stripe_connect_account_id"]
    search_fields = ["organization__name", "stripe_customer_id", "stripe_connect_account_id"]
    # customer and card are Stripe's answers, set by billing.payments; only the Connect account is typed in
    readonly_fields = ["stripe_customer_id", "payment_method_id", "payment_method_label"]


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(_ReadOnly):
    list_display = ["invoice", "attempt", "status", "amount_minor", "currency", "decline_code", "created_at"]
    list_filter = ["status"]


@admin.register(Payout)
class PayoutAdmin(_ReadOnly):
    list_display = ["provider", "invoice", "attempt", "status", "amount_minor", "currency", "stripe_transfer_id", "created_at"]
    list_filter = ["status"]


@admin.register(StripeEvent)
class StripeEventAdmin(_ReadOnly):
    list_display = ["event_id", "type", "status", "received_at", "processed_at"]
    list_filter = ["status", "type"]
