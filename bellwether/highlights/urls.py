from django.urls import path

from . import views

app_name = "highlights"

urlpatterns = [
    path("highlights/", views.archive, name="archive"),
    path("highlights/subscribe/", views.subscribe, name="subscribe"),
    path("highlights/signup-box/", views.signup_box, name="signup-box"),
    path("highlights/confirm/<str:signed>/", views.confirm, name="confirm"),
    path("highlights/unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("highlights/<id:number>/", views.issue_page, name="issue"),
    path("highlights/<id:number>/charts/<slug:market>.png", views.chart_png, name="chart"),
]
