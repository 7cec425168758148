"""What the project's management commands share."""

from __future__ import annotations

from argparse import RawDescriptionHelpFormatter


class DetailedHelp:
    """Print ``details`` below a command's options in ``--help``, line breaks kept.

    Mix in before the command's base class: ``class Command(DetailedHelp, BaseCommand)``.
    """

    details = ""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        parser.epilog = self.details
        return parser
