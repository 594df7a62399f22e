"""Cluster root CA and join tokens (`SWMTKN-1-<root CA digest>-<secret>`)."""
