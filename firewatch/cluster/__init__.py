"""Several firewatch workers on one distributed engine (docs/scale.md).

Devices speak MQTT to a NATS cluster whose JetStream stream partitions their messages by device;
each worker owns a share of the partitions through a lease in PostgreSQL, restores the detector
state of a partition it takes over from the last snapshot there and replays the rest from the
stream. The workers share nothing else.
"""
