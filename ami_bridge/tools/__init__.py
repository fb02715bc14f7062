"""Operator tools over AMI: `dialer check-pbx`, transcript replay and recording formats."""
