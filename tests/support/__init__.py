"""What the tests share, one module per thing: a real hub on 127.0.0.1 (hub) or as its own
process (hub_process), the records a device sends it (records), a throwaway PostgreSQL database
(postgres), a Label Studio server (labelstudio), a signed release repository over HTTP (updater),
synthetic drift telemetry (drift_telemetry), a link that can be cut (flapping_link), the seed
model (seed_model), the repository's paths (paths), scripts run as subprocesses (procs) and a
network guard for them (netguard). Fixtures stay in the conftest.py files and call into these."""
