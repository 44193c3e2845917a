"""Device simulators: a hospital building model, per-sensor value models, incidents, an MQTT publisher."""
