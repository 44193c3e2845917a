"""MQTT -> readings: topic scheme, payload decoding, validation, de-duplication and rejects."""
