from django.urls import path

from notes import views

urlpatterns = [path("notes", views.notes), path("sync", views.sync_status)]
