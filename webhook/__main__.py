"""`python -m webhook` runs the `egress-guard` command."""

from webhook.cli.main import main

main()
