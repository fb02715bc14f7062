"""The AMI worker: one per Asterisk, it originates calls and persists what the PBX reports."""
