from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("", views.account_home, name="home"),
    path("tokens/", views.token_create, name="token-create"),
    path("tokens/<id:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("preferences/", views.preferences_update, name="preferences"),
]
