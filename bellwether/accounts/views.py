"""Placeholder: the account page is being built."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse


@login_required
def account_home(request):
    return HttpResponse("Account")
