"""One module per subcommand, each exposing `COMMAND`; found and imported only when used."""
