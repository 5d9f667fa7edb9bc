"""`flctl deploy …`: roll a federation out to machines over SSH, inspect it, stop it."""
