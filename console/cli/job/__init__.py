"""`flctl job`: submit, list, show, abort, download and follow jobs."""
