"""The device agent: detector, telemetry, sampler, spool, uplink, updater."""
