"""The service's rules, free of HTTP: request windows checked, pools registered and sealed, scoring jobs
run, selections computed and stored. Errors are ``DomainError``s that the API maps to status codes."""
