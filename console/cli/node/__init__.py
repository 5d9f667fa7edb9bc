"""`flctl node`: run a server or a site from its kit."""
