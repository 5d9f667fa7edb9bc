"""Full screens: the overview, one job, a site's logs, provisioning."""
