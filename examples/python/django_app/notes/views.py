"""POST /notes adds a note, GET /notes lists them, GET /sync shows where the sync of the database stands."""

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

import lite2pg
from notes.models import Note


@csrf_exempt
def notes(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        note = Note.objects.create(body=request.POST["body"], pinned=request.POST.get("pinned") == "1")
        return JsonResponse({"id": note.id}, status=201)
    return JsonResponse([{"id": n.id, "body": n.body} for n in Note.objects.order_by("id")], safe=False)


def sync_status(request: HttpRequest) -> JsonResponse:
    # A Sync object that is not started only asks: the one mysite/wsgi.py started runs the sync.
    sync = lite2pg.from_env(sqlite=str(settings.DATABASES["default"]["NAME"]))
    if sync is None:
        return JsonResponse({"enabled": False})
    status = sync.status()
    return JsonResponse({"enabled": True, "applied_seq": status["applied_seq"], "lag_seconds": status["lag_seconds"]})
