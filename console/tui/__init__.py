"""`flctl console`: a Textual TUI that watches and drives the federation over the admin client."""
