"""Live call state: the in-process broadcaster and the MQTT feed."""
