"""The device's outbox: what it has to send, held on disk until the hub has it.

`spool` is the SQLite outbox (`budget` its limits and counters, `storage` its file), `writer`
fills it off the inference thread, `uplink` drains it to the hub (`uplink_policy`: its
configuration, backoff and what each answer means).
"""
