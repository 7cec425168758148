"""Placeholder: the markets index and the news panels are being built."""

from django.http import HttpResponse


def market_index(request):
    return HttpResponse("Markets")


def home_strip(request):
    return HttpResponse("")


def article_panel(request, article_id: int):
    return HttpResponse("")


def section_panel(request, section_id: int):
    return HttpResponse("")
