"""`flctl kit`: inspect, verify, request and complete startup kits."""
