"""`flctl context add|ls|use|rm`: named admin kits, one current (cloud/federation_contexts.py keeps them)."""
