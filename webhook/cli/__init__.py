"""The `egress-guard` command: one module per subcommand in `commands/`, the offline review and
its output formats beside them."""
