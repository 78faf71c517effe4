from django.urls import path
from django.views.generic.base import RedirectView

from . import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="orders")),
    path("orders", views.orders, name="orders"),
    path("updates", views.updates, name="updates"),
]
