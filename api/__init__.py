"""The operators' GraphQL API."""
