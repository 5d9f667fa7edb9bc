"""`flctl provision`: project.yml to signed startup kits, and signing certificate requests."""
