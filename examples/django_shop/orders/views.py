"""A view that saves an order and enqueues its confirmation in one transaction."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from orders.models import Order
from orders.tasks import send_confirmation


@csrf_exempt
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    """The order and its task commit together: if anything below raises, neither exists."""
    with transaction.atomic():
        order = Order.objects.create(item=request.POST["item"], email=request.POST["email"])
        result = send_confirmation.enqueue(order.id)
        order.confirmation_task = result.id
        order.save(update_fields=["confirmation_task"])
    return JsonResponse({"order": order.id, "task": result.id}, status=201)


def confirmation(request: HttpRequest, order_id: int) -> JsonResponse:
    """What the confirmation task did: its status, attempts, errors and return value."""
    order = Order.objects.get(id=order_id)
    result = send_confirmation.get_result(order.confirmation_task)
    return JsonResponse(
        {
            "status": result.status,
            "attempts": result.attempts,
            "errors": [e.exception_class_path for e in result.errors],
            "return_value": result.return_value if result.status == "SUCCESSFUL" else None,
        }
    )
