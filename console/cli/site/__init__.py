"""`flctl site`: the sites the server knows."""
