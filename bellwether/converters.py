"""URL converters shared by every app's URLconf.

Django's ``int`` converter takes any run of digits, and a number past what
the database's integer columns hold ends as an error inside the query (a
500 on both databases). ``id`` takes 1 to 18 digits, which always fits a
64-bit column: a longer number matches no URL and is a plain 404.
"""

from __future__ import annotations


class IdConverter:
    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)
