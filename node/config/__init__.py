"""What a node reads at start: its kit (`kit`) and its local/ files (`local_files`, `privacy`, `resources`)."""
