"""The cloud's front door for the fleet: ingest, device registry, releases."""
