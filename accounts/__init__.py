"""People and integrations that use the API: accounts, passwords, bearer tokens and roles."""
