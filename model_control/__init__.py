"""Talking to models: provider clients, the model catalog and the synchronous endpoints."""
