"""The admin's jobs: a read-only list (filters by state, queue and worker; search in args),
a page per job with its errors, and retry and cancel actions that go through jobrunner."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin, messages
from django.db import router
from django.utils.html import format_html, format_html_join

from jobrunner.contrib.django.database import target
from jobrunner.contrib.django.models import Job
from jobrunner.db.queries import sync as sq


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):  # type: ignore[misc]
    list_display = ("id", "worker", "queue", "state", "attempt", "max_attempts", "scheduled_at")
    list_filter = ("state", "queue", "worker")
    search_fields = ("args",)
    actions: ClassVar[list[str]] = ["retry_jobs", "cancel_jobs"]
    exclude = ("errors",)
    readonly_fields = (
        *(f.name for f in Job._meta.fields if f.name != "errors"),
        "error_list",
    )

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        # The page is read-only; the actions need the right to change jobs.
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="errors")  # type: ignore[untyped-decorator]
    def error_list(self, job: Job) -> Any:
        if not job.errors:
            return "-"
        rows = (
            (e.get("attempt"), e.get("at"), e.get("error"), e.get("traceback") or "")
            for e in job.errors
        )
        items = format_html_join("", "<li>attempt {} at {}: {}<pre>{}</pre></li>", rows)
        return format_html("<ol>{}</ol>", items)

    @admin.action(description="Retry the selected jobs", permissions=["change"])  # type: ignore[untyped-decorator]
    def retry_jobs(self, request: Any, queryset: Any) -> None:
        self._each(request, queryset, sq.retry_job, "retried")

    @admin.action(description="Cancel the selected jobs", permissions=["change"])  # type: ignore[untyped-decorator]
    def cancel_jobs(self, request: Any, queryset: Any) -> None:
        self._each(request, queryset, sq.cancel_job, "cancelled")

    def _each(self, request: Any, queryset: Any, change: Any, done: str) -> None:
        ids = list(queryset.values_list("id", flat=True))
        changed = 0
        with target(router.db_for_write(Job)) as (conn, _):
            for job_id in ids:
                changed += change(conn, job_id) is not None
        level = messages.SUCCESS if changed == len(ids) else messages.WARNING
        skipped = len(ids) - changed
        note = f"; {skipped} could not be (finished, or executing)" if skipped else ""
        self.message_user(request, f"{changed} job(s) {done}{note}", level)
