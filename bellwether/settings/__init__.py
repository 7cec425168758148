"""Settings modules: ``base`` (everything, read from the environment),
``production`` (secure defaults for a public deployment) and ``test``."""
