"""Placeholder: the market page, trade ticket and portfolio are being built."""

from django.http import HttpResponse, JsonResponse


def market_detail(request, slug: str):
    return HttpResponse(slug)


def chart_data(request, slug: str):
    return JsonResponse({})


def quote(request, slug: str):
    return HttpResponse("")


def trade(request, slug: str):
    return HttpResponse("")


def portfolio(request):
    return HttpResponse("")
