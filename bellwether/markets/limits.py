"""Size limits on what a market may hold, shared by the services, the API schemas and the admin forms.

The services enforce them (every writer goes through one); the API schemas
declare them too, so the OpenAPI schema tells clients before they send.
SLUG_MAX_CHARS and ARTICLES_MAX are the API's alone: the admin makes its own
slugs and links one article at a time.
"""

from . import lmsr

QUESTION_MAX_CHARS = 300
DESCRIPTION_MAX_CHARS = 10_000
CRITERIA_MAX_CHARS = 10_000
NOTE_MAX_CHARS = 2_000
OUTCOME_NAME_MAX_CHARS = 200
OUTCOME_SLUG_MAX_CHARS = 60
OUTCOMES_MAX = lmsr.MAX_OUTCOMES  # the pricing engine's own limit
SOURCES_MAX = 20
SOURCE_MAX_CHARS = 2_000
SLUG_MAX_CHARS = 120
ARTICLES_MAX = 100
