"""Service contracts (package data): methods, schemas, notifications, error codes."""
