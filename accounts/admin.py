from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import ApiToken, Job, Membership, Organization, SshPublicKey, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active"]
    search_fields = ["email", "full_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name", "time_zone")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "is_demo", "created_at"]
    list_filter = ["kind", "is_demo"]
    readonly_fields = ["is_demo"]  # set by seed_demo only
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "organization", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at"]
    search_fields = ["name", "prefix", "user__email"]


@admin.register(SshPublicKey)
class SshPublicKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "key_type", "bits", "fingerprint", "created_at", "revoked_at"]
    list_filter = ["key_type"]
    # The key is never edited (see the model); revoke it and add another instead.
    readonly_fields = ["user", "key_type", "key_data", "comment", "bits", "fingerprint", "created_at"]
    search_fields = ["name", "fingerprint", "user__email"]

    def has_add_permission(self, request):
        return False  # keys are added by their owner (accounts.services.ssh_key_add validates them)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Read-only: jobs change only through accounts.jobs (their task)."""

    list_display = ["id", "kind", "status", "organization", "owner", "progress_done", "progress_total", "created_at", "finished_at"]
    list_filter = ["kind", "status"]
    list_select_related = ["organization", "owner"]
    readonly_fields = [f.name for f in Job._meta.fields if f.name not in {"input_data", "result_file"}]
    exclude = ["input_data", "result_file"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
