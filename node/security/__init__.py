"""Who may do what, and proof of what was done: authorization (`authz`), the audit log, revocation,
TLS, and the check of ids that become paths (`path_names`).
"""
