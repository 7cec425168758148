from django.urls import path

from . import views

app_name = "live"

urlpatterns = [
    path("markets/", views.site_stream, name="markets"),
    path("markets/<slug:slug>/", views.market_stream, name="market"),
]
