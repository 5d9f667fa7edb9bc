"""The operator's side: the `flctl` CLI (Typer) and the TUI (Textual). Nothing imports `console`."""
