"""The video feature: generation, realtime, the gallery (jobs and the pipeline follow)."""
