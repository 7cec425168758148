"""Placeholder views: the highlights pages are being built (issue 6)."""

from django.http import Http404, HttpResponse


def archive(request):
    return HttpResponse("Weekly highlights")


def subscribe(request):
    raise Http404


def signup_box(request):
    return HttpResponse("")


def confirm(request, signed: str):
    raise Http404


def unsubscribe(request, token: str):
    raise Http404


def issue_page(request, number: int):
    raise Http404


def chart_png(request, number: int, market: str):
    raise Http404
