"""JSON Schemas generated from the models (package data); see harness.schemagen."""
