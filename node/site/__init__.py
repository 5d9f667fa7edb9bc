"""The site agent daemon and the site side of each running job."""
