"""`flctl certs`: every participant's certificate with its days to expiry, and renewing those about to expire."""
